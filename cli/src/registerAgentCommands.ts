import { existsSync } from "node:fs";
import type { Command } from "commander";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import { loadAgentConfig } from "../../agent/src/config/AgentConfig.js";
import { createAgentRuntime } from "../../agent/src/createAgentRuntime.js";
import { restoreVmConfig } from "../../agent/src/vmconfig/restoreVmConfig.js";
import { ProgressBar } from "../../shared/src/cli/ProgressBar.js";
import { renderTable } from "../../shared/src/cli/renderTable.js";
import { parseLabels, runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { backupMode } from "../../shared/src/grpc/wire/backupMode.js";
import { quiesceMode } from "../../shared/src/grpc/wire/quiesceMode.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";
import { prepareDiskRestore } from "./prepareDiskRestore.js";
import { withCliRepository } from "./withCliRepository.js";

function parseArgv(what: string, v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((x) => typeof x === "string")) {
    throw new CairnError(
      "invalid-argument",
      `${what} must be a JSON array of strings, e.g. '["/usr/bin/sync"]'`,
    );
  }
  return parsed as string[];
}

interface SnapshotRestoreOptions {
  repo: string;
  snapshot: string;
  out: string;
  force?: boolean;
  passphraseFile?: string;
  json?: boolean;
}

/** The options of a command that writes something of one snapshot of a local repository to `--out`. */
function snapshotRestore(cmd: Command, outHelp: string, forceHelp: string): Command {
  return cmd
    .requiredOption("--repo <location>", "repository")
    .requiredOption("--snapshot <id>", "snapshot id")
    .requiredOption("--out <path>", outHelp)
    .option("--force", forceHelp)
    .option("--passphrase-file <file>")
    .option("--json", "machine-readable result");
}

/** Local agent commands: drive this host's agent directly, without a coordinator. */
export function registerAgentCommands(program: Command): void {
  const agent = program.command("agent").description("this host's agent, driven locally (no coordinator)");
  agent
    .command("domains")
    .description("list the domains on this host")
    .option("--config <file>", "agent config (YAML)")
    .option("--json", "machine-readable output")
    .action((o: { config?: string; json?: boolean }) =>
      runCli(async () => {
        const rt = await createAgentRuntime(await loadAgentConfig(o.config));
        const ds = await rt.hypervisor.listDomains(AbortSignal.timeout(60_000));
        if (o.json) return void process.stdout.write(`${JSON.stringify(ds)}\n`);
        process.stdout.write(
          `${renderTable(
            ["NAME", "UUID", "STATE", "DISKS", "AGENT"],
            ds.map((d) => [
              d.name,
              d.uuid,
              d.state,
              d.disks.map((k) => `${k.target}(${k.format})`).join(" "),
              d.hasGuestAgentChannel ? "yes" : "no",
            ]),
          )}\n`,
        );
      }, o),
    );

  agent
    .command("backup")
    .description("back up one domain into a repository")
    .requiredOption("--domain <name-or-uuid>", "domain to back up")
    .requiredOption("--repo <location>", "repository (local path or s3://bucket/prefix)")
    .option("--mode <mode>", `one of ${backupMode.names.join(", ")}`, "auto")
    .option("--quiesce <q>", `one of ${quiesceMode.names.join(", ")}`, "preferred")
    .option("--disk <target...>", "only these disks (default: all)")
    .option("--label <key=value...>", "labels stored with the snapshot")
    .option("--pre-freeze <argv-json>", "command run in the guest before the freeze, as a JSON array")
    .option("--post-thaw <argv-json>", "command run in the guest after the thaw, as a JSON array")
    .option("--job-id <id>", "job id (default: generated)")
    .option("--config <file>", "agent config (YAML)")
    .option("--passphrase-file <file>")
    .option("--progress <how>", "bar | json | none", "bar")
    .option("--json", "machine-readable result")
    .action(
      (o: {
        domain: string;
        repo: string;
        mode: string;
        quiesce: string;
        disk?: string[];
        label?: string[];
        preFreeze?: string;
        postThaw?: string;
        jobId?: string;
        config?: string;
        passphraseFile?: string;
        progress: string;
        json?: boolean;
      }) =>
        runCli(async () => {
          const mode = backupMode.parse(o.mode, "--mode");
          const quiesce = quiesceMode.parse(o.quiesce, "--quiesce");
          if (!o.repo.startsWith("s3://") && !existsSync(o.repo)) {
            throw new CairnError("not-found", `no repository at ${o.repo}`, {
              hint: `create it with cairn repo init ${o.repo}`,
            });
          }
          const preFreeze = parseArgv("--pre-freeze", o.preFreeze);
          const postThaw = parseArgv("--post-thaw", o.postThaw);
          const config = await loadAgentConfig(o.config);
          const rt = await createAgentRuntime(config);
          const ac = new AbortController();
          const stop = (sig: string) => ac.abort(new CairnError("aborted", `backup interrupted by ${sig}`));
          process.once("SIGINT", () => stop("SIGINT"));
          process.once("SIGTERM", () => stop("SIGTERM"));
          await rt.recover(ac.signal);
          // The agent config's chunk workers and local reserve, as the daemon would open it.
          await withCliRepository(
            o.repo,
            o.passphraseFile,
            async (repository) => {
              const bar = new ProgressBar(`backup ${o.domain}`);
              try {
                const r = await runBackup(
                  {
                    hypervisor: rt.hypervisor,
                    guestAgent: rt.guestAgent,
                    freezeMarkers: rt.freezeMarkers,
                    repository,
                    log: rt.log,
                  },
                  rt.liveBackup,
                  {
                    jobId: o.jobId ?? `local-${Date.now().toString(36)}`,
                    domain: o.domain,
                    mode,
                    quiesce,
                    ...(o.disk ? { disks: o.disk } : {}),
                    labels: parseLabels(o.label),
                    hooks: { ...(preFreeze ? { preFreeze } : {}), ...(postThaw ? { postThaw } : {}) },
                    signal: ac.signal,
                    onState: (s) => {
                      if (o.progress === "json") process.stderr.write(`${JSON.stringify({ state: s })}\n`);
                    },
                    onProgress: (p) => {
                      if (o.progress === "json") process.stderr.write(`${JSON.stringify({ progress: p })}\n`);
                      else if (o.progress === "bar") bar.update(p);
                    },
                  },
                );
                bar.done();
                const m = r.manifest;
                if (o.json) {
                  process.stdout.write(
                    `${JSON.stringify({ snapshot: m, bytesRead: r.bytesRead, freezeWindowMs: r.freezeWindowMs ?? null, prunedCheckpoints: r.prunedCheckpoints })}\n`,
                  );
                  return;
                }
                process.stdout.write(
                  `snapshot ${m.id} of ${m.vm.name} sealed in ${repository.location}\n` +
                    `consistency: ${m.consistency.kind === "quiesced" ? `quiesced (freeze window ${r.freezeWindowMs?.toFixed(0)} ms)` : `crash-consistent: ${m.consistency.reason}`}\n` +
                    `${renderTable(
                      ["DISK", "KIND", "READ", "NEW", "STORED", "WHY FULL"],
                      m.disks.map((d) => [
                        d.target,
                        d.kind,
                        formatBytes(d.stats.bytesRead),
                        formatBytes(d.stats.bytesNew),
                        formatBytes(d.stats.bytesStored),
                        d.fullReason ?? "",
                      ]),
                    )}\n`,
                );
              } finally {
                bar.done();
              }
            },
            config,
          );
        }, o),
    );

  snapshotRestore(
    agent.command("restore-disk").description("write one disk of a snapshot to a file"),
    "destination file",
    "overwrite an existing file",
  )
    .requiredOption("--disk <target>", "disk target, e.g. vda")
    .option("--format <f>", "raw | qcow2", "raw")
    .action((o: SnapshotRestoreOptions & { disk: string; format: string }) =>
      runCli(async () => {
        const restore = prepareDiskRestore(o.out, { ...o, destinationFlag: "--out" });
        await restore(o.repo, o.snapshot, o.disk);
        process.stdout.write(
          o.json
            ? `${JSON.stringify({ out: o.out, format: o.format })}\n`
            : `restored ${o.disk} of ${o.snapshot} to ${o.out} (${o.format})\n`,
        );
      }, o),
    );

  snapshotRestore(
    agent
      .command("restore-config")
      .description("write a snapshot's domain XML and NVRAM / TPM state files to a directory"),
    "destination directory (created; must be empty unless --force)",
    "write into a non-empty directory, overwriting files",
  ).action((o: SnapshotRestoreOptions) =>
    runCli(async () => {
      await withCliRepository(o.repo, o.passphraseFile, async (repository) => {
        const r = await restoreVmConfig(repository, o.snapshot, o.out, { force: !!o.force });
        if (o.json) return void process.stdout.write(`${JSON.stringify(r)}\n`);
        process.stdout.write(
          `restored the configuration of ${o.snapshot} to ${o.out}: domain XML in ${r.domainXml}\n` +
            (r.recorded
              ? r.files.length
                ? `${renderTable(
                    ["FILE", "KIND", "ORIGINAL PATH", "SIZE", "SHA256"],
                    r.files.map((f) => [
                      f.name,
                      f.kind,
                      f.path,
                      f.size === undefined ? "-" : formatBytes(f.size),
                      f.sha256 ?? `missing: ${f.missing}`,
                    ]),
                  )}\n`
                : "the domain has no NVRAM or TPM state\n"
              : "this snapshot predates NVRAM/TPM capture: only the domain XML is stored\n"),
        );
      });
    }, o),
  );
}
