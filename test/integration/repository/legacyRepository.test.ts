import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import {
  LEGACY_CHUNK_SIZE,
  LEGACY_PASSPHRASE,
  LEGACY_VM,
  legacyDisk,
} from "../../fixtures/legacy-repository/legacyDisk.js";

// Repositories written by Cairn before repository-format §3.1 and frame version 2 (committed
// fixtures made with commit b9f794b, see their generate.ts) still open, read and take new backups;
// `cairn repo upgrade` authenticates their config.
const REPO_ROOT = join(import.meta.dirname, "../../..");
const FIXTURES = join(REPO_ROOT, "test/fixtures/legacy-repository");
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A private copy of a fixture repository (tests write into it). */
async function copyOf(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cairn-legacy-"));
  dirs.push(dir);
  await cp(join(FIXTURES, name), join(dir, name), { recursive: true });
  return join(dir, name);
}

async function open(dir: string, passphrase?: string): Promise<Repository> {
  return Repository.open(new LocalObjectStore(dir), { workers: 1, ...(passphrase ? { passphrase } : {}) });
}

/** Reads the fixture's one snapshot back, checks it byte for byte, and adds a backup with today's code. */
async function readsAndTakesBackups(dir: string, passphrase: string | undefined): Promise<void> {
  const repo = await open(dir, passphrase);
  try {
    expect(repo.configAuthenticated).toBe(false);
    const [old] = await repo.listSnapshots();
    if (!old) throw new Error("the fixture has no snapshot");
    const want = legacyDisk();
    expect((await (await repo.openDisk(old.id, "vda")).read(0, want.length)).equals(want)).toBe(true);
    // Old frames are version 1.
    expect((await readFile(join(dir, "snapshots", old.id)))[0]).toBe(1);

    const next = Buffer.from(want);
    next.write("changed by today's Cairn ".repeat(100), 3 * LEGACY_CHUNK_SIZE);
    const w = await repo.beginSnapshot({ vm: LEGACY_VM });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: next.length,
      sourceFormat: "raw",
      kind: "incremental",
      parent: { snapshotId: old.id },
    });
    await d.write(0, next);
    await d.finish();
    const m = await w.seal({ domainXml: "<domain/>", consistency: { kind: "quiesced" } });
    // New encrypted frames are version 2; unencrypted ones stay version 1 (format §5).
    expect((await readFile(join(dir, "snapshots", m.id)))[0]).toBe(passphrase ? 2 : 1);
    expect((await (await repo.openDisk(m.id, "vda")).read(0, next.length)).equals(next)).toBe(true);
    expect((await (await repo.openDisk(old.id, "vda")).read(0, want.length)).equals(want)).toBe(true);
    const report = await verifyRepository(repo, { readData: true });
    expect(report.problems).toEqual([]);
    expect(report.snapshots).toBe(2);
  } finally {
    await repo.close();
  }
}

async function rewriteConfig(dir: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const c = JSON.parse(await readFile(join(dir, "config"), "utf8")) as Record<string, unknown>;
  edit(c);
  await writeFile(join(dir, "config"), JSON.stringify(c, null, 2));
}

function cairn(args: string[], env: Record<string, string>) {
  return execa("node", ["--import", "tsx", join(REPO_ROOT, "cli/src/main.ts"), ...args], {
    cwd: REPO_ROOT,
    reject: false,
    timeout: 120_000,
    env,
  });
}

describe("repositories written before the config was authenticated", () => {
  it.each(["encrypted-v2", "encrypted-v1"])(
    "%s: opens with the passphrase, reads, and takes new backups",
    async (name) => {
      await readsAndTakesBackups(await copyOf(name), LEGACY_PASSPHRASE);
    },
  );

  it("plain-v2: opens without a passphrase, reads, and takes new backups; a passphrase is refused", async () => {
    const dir = await copyOf("plain-v2");
    await readsAndTakesBackups(dir, undefined);
    const e = await open(dir, LEGACY_PASSPHRASE).catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
  });

  it("a legacy config rewritten to encryption:null is refused when opened with the passphrase", async () => {
    const dir = await copyOf("encrypted-v2");
    await rewriteConfig(dir, (c) => {
      c["encryption"] = null;
    });
    const e = await open(dir, LEGACY_PASSPHRASE).catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect((e as Error).message).toMatch(
      /is not encrypted, but a passphrase was given: refusing \(possible downgrade\)/,
    );
  });

  it("cairn repo upgrade authenticates the config; the data reads as before; tampering is refused after", async () => {
    const dir = await copyOf("encrypted-v2");
    const env = { CAIRN_PASSPHRASE: LEGACY_PASSPHRASE };
    const before = JSON.parse(await readFile(join(dir, "config"), "utf8"));
    const r = await cairn(["repo", "upgrade", dir, "--json"], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ location: dir, result: "upgraded" });
    const after = JSON.parse(await readFile(join(dir, "config"), "utf8"));
    expect(after.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(after.encryption.wrappedKey).not.toBe(before.encryption.wrappedKey);
    expect({ ...after, mac: undefined, encryption: { ...after.encryption, wrappedKey: "" } }).toEqual({
      ...before,
      mac: undefined,
      encryption: { ...before.encryption, wrappedKey: "" },
    });

    const repo = await open(dir, LEGACY_PASSPHRASE);
    try {
      expect(repo.configAuthenticated).toBe(true);
      const [old] = await repo.listSnapshots();
      const want = legacyDisk();
      expect((await (await repo.openDisk(old?.id ?? "", "vda")).read(0, want.length)).equals(want)).toBe(
        true,
      );
    } finally {
      await repo.close();
    }
    const again = await cairn(["repo", "upgrade", dir, "--json"], env);
    expect(JSON.parse(again.stdout).result).toBe("already-authenticated");

    const config = await readFile(join(dir, "config"));
    await rewriteConfig(dir, (c) => {
      c["chunkSize"] = 2 * LEGACY_CHUNK_SIZE;
    });
    expect(isCairnError(await open(dir, LEGACY_PASSPHRASE).catch((x: unknown) => x), "corrupt")).toBe(true);
    await writeFile(join(dir, "config"), config);
    await rewriteConfig(dir, (c) => {
      delete c["mac"];
    });
    const stripped = await open(dir, LEGACY_PASSPHRASE).catch((x: unknown) => x);
    expect(isCairnError(stripped, "corrupt")).toBe(true);
    expect((stripped as Error).message).toMatch(/has no MAC.*possible downgrade/);

    const wrong = await cairn(["repo", "upgrade", dir], { CAIRN_PASSPHRASE: "not it" });
    expect(wrong.exitCode).not.toBe(0);
  });
});
