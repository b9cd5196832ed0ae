import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import type { TestCoordinator } from "./coordinatorHarness.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Runs the `cairn` CLI from source (never rejects: tests look at exitCode, stdout, stderr). */
export function cairnCli(args: readonly string[], opts: { timeoutMs?: number } = {}) {
  return execa("node", ["--import", "tsx", "cli/src/main.ts", ...args], {
    cwd: REPO_ROOT,
    reject: false,
    timeout: opts.timeoutMs ?? 300_000,
  });
}

/** The options that point the CLI at a test coordinator as its admin (the token from a 0600 file). */
export function coordinatorArgs(c: TestCoordinator): string[] {
  const tokenFile = join(c.dir, "admin-cli.token");
  if (!existsSync(tokenFile)) writeFileSync(tokenFile, c.adminToken, { mode: 0o600 });
  return ["--coordinator", c.address, "--ca-file", c.caFile, "--token-file", tokenFile];
}

/** `cairn agent backup` of `domain` into `repo` with an agent config (its work dir). */
export function agentBackupArgs(domain: string, repo: string, config: string): string[] {
  return ["agent", "backup", "--domain", domain, "--repo", repo, "--config", config];
}
