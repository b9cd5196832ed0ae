import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import type { JobSummary } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";
import {
  type ConnectOptions,
  type CoordinatorClient,
  connectCoordinator,
  withConnectOptions,
} from "./connectCoordinator.js";
import { ago, output, table, when } from "./output.js";
import { finish, watchJob } from "./registerJobCommands.js";

type O = ConnectOptions & { json?: boolean };
/** Options of the commands that run as maintenance jobs. */
type M = O & { host?: string; wait?: boolean };

const jobOptions = (o: M) => ({ host: o.host ?? "", wait: o.wait !== false });
const queuedLine = (j: JobSummary | undefined) =>
  `queued job ${j?.jobId}: follow it with \`cairn jobs watch ${j?.jobId}\`\n`;

/** Prints a maintenance response: its report as `render` says, or the job when it was not waited for. */
function printReport<R>(
  o: M,
  res: { job?: JobSummary | undefined; report?: R | undefined },
  render: (r: R) => string,
) {
  const r = res.report;
  output(o.json, res, () => (r === undefined ? queuedLine(res.job) : render(r)));
  return r;
}

/** Adds the options every maintenance command has: where it runs, and whether to wait for it. */
function maintenanceCommand(c: Command): Command {
  return withConnectOptions(
    c
      .option("--host <id>", "run it on this host's agent (default: one that last reached the repository)")
      .option("--no-wait", "queue the job and return its id"),
  );
}

/** Coordinator-managed repositories (`cairn repo add|list|verify|prune|gc|stats`) and `cairn restore`. */
export function registerRepositoryAdminCommands(program: Command): void {
  const repo = program.commands.find((c) => c.name() === "repo") ?? program.command("repo");
  withConnectOptions(
    repo
      .command("add <name> <location>")
      .description("register an initialized repository with the coordinator"),
  )
    .option("--wait", "wait for an agent to scan it and import its snapshots")
    .action((name: string, location: string, o: O & { wait?: boolean }) =>
      runCli(async () => {
        const client = connectCoordinator(o);
        const r = await client.registerRepository({ name, location });
        if (!o.json)
          process.stdout.write(
            `repository ${name} ${r.created ? "registered" : "updated"}: ${location}\n` +
              `an agent scans it for existing snapshots in job ${r.scanJobId}\n`,
          );
        const scan = o.wait ? await watchJob(client, r.scanJobId, o.json) : undefined;
        if (o.json) output(true, { name, location, ...r, ...(scan ? { scan } : {}) }, () => "");
        else if (scan) process.stdout.write(`scan ${scan.state}: ${scan.reason}\n`);
        if (scan && scan.state !== "succeeded")
          throw new CairnError("failed-precondition", `scanning ${location} failed: ${scan.reason}`, {
            hint: "fix the location (as the agents see it) and run `cairn repo add` again",
          });
      }, o),
    );
  withConnectOptions(repo.command("list").description("repositories the coordinator knows")).action((o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listRepositories({});
      output(o.json, r.repositories, () =>
        table(
          ["NAME", "LOCATION", "ID", "REACHED BY", "REGISTERED"],
          r.repositories.map((x) => [
            x.name,
            x.location,
            x.id || "(not opened yet)",
            `${x.reachableHosts} hosts`,
            when(x.createdMs),
          ]),
        ),
      );
    }, o),
  );
  withConnectOptions(
    repo
      .command("show <name>")
      .description("a repository's id, and which hosts reach it, by what path, how fast"),
  ).action((name: string, o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).showRepository({ name });
      const s = r.repository;
      const mib = (v: number, ok: boolean) => (ok ? v.toFixed(0) : "");
      output(
        o.json,
        r,
        () =>
          `repository ${s?.name}: ${s?.location}\nid: ${s?.id || "(not opened yet)"}\nreached by ${s?.reachableHosts ?? 0} online hosts\n\n` +
          table(
            ["HOST", "PATH", "REACHABLE", "WRITE MiB/s", "READ MiB/s", "PROBED", "ERROR"],
            r.reach.map((x) => [
              x.hostId,
              x.location,
              x.reachable ? "yes" : "no",
              mib(x.writeMibS, x.reachable),
              mib(x.readMibS, x.reachable),
              ago(x.probedMs),
              x.error,
            ]),
          ),
      );
    }, o),
  );
  maintenanceCommand(
    repo
      .command("verify <name>")
      .description("check structure (and with --read-data the chunks), as a job on an agent")
      .option("--read-data", "also read and re-hash chunks")
      .option("--percent <n>", "with --read-data: read this share of the chunks (a random slice)", (v) =>
        Number.parseInt(v, 10),
      ),
  ).action((name: string, o: M & { readData?: boolean; percent?: number }) =>
    runCli(async () => {
      if (o.percent !== undefined && !(o.percent >= 1 && o.percent <= 100))
        throw new CairnError("invalid-argument", `--percent ${o.percent} is not from 1 to 100`);
      const res = await connectCoordinator(o).verifyRepository({
        name,
        readData: Boolean(o.readData),
        readDataPercent: o.percent ?? 0,
        ...jobOptions(o),
      });
      const r = printReport(o, res, (r) =>
        r.ok
          ? `repository ${name} OK: ${r.snapshotsChecked} snapshots, ${r.chunksChecked} chunks checked${
              r.chunksRead > 0n ? `, ${r.chunksRead} read` : ""
            } (job ${res.job?.jobId} on ${res.job?.hostId})\n`
          : `repository ${name} has ${r.problems.length} problems:\n${r.problems.map((p) => `  ${p}`).join("\n")}\n`,
      );
      if (r && !r.ok)
        throw new CairnError("corrupt", `repository ${name} failed verification`, {
          hint: "see the problems above",
        });
    }, o),
  );
  maintenanceCommand(
    repo
      .command("prune <name>")
      .description("apply each VM's policy retention")
      .option("--dry-run", "only show what would go"),
  ).action((name: string, o: M & { dryRun?: boolean }) =>
    runCli(async () => {
      const res = await connectCoordinator(o).pruneRepository({
        name,
        dryRun: Boolean(o.dryRun),
        ...jobOptions(o),
      });
      printReport(
        o,
        res,
        (r) =>
          `${o.dryRun ? "would remove" : "removed"} ${r.removedSnapshotIds.length} snapshots, kept ${r.kept}${
            r.removedSnapshotIds.length ? `:\n  ${r.removedSnapshotIds.join("\n  ")}` : ""
          }\n${o.dryRun ? "" : "space is freed by `cairn repo gc`\n"}`,
      );
    }, o),
  );
  maintenanceCommand(
    repo
      .command("gc <name>")
      .description(
        "delete chunks no snapshot references; rewrite packs that are mostly unreferenced or small",
      )
      .option("--dry-run", "only show what would be deleted and rewritten")
      .option("--no-repack", "keep packs that still hold live chunks as they are"),
  ).action((name: string, o: M & { dryRun?: boolean; repack?: boolean }) =>
    runCli(async () => {
      const res = await connectCoordinator(o).gcRepository({
        name,
        dryRun: Boolean(o.dryRun),
        noRepack: o.repack === false,
        ...jobOptions(o),
      });
      printReport(
        o,
        res,
        (r) =>
          `${o.dryRun ? "would delete" : "deleted"} ${r.chunksDeleted} chunks and ${r.packsDeleted} packs` +
          (r.packsRepacked > 0n
            ? `, ${o.dryRun ? "would rewrite" : "rewrote"} ${r.packsRepacked} packs (copying ${formatBytes(Number(r.packBytesRepacked))})`
            : "") +
          `: ${formatBytes(Number(r.bytesFreed))} ${o.dryRun ? "to free" : "freed"}` +
          (r.packBytesUnreferenced > 0n
            ? `; ${formatBytes(Number(r.packBytesUnreferenced))} unreferenced inside packs still in use\n`
            : "\n"),
      );
    }, o),
  );
  maintenanceCommand(repo.command("stats <name>").description("sizes, dedup and compression")).action(
    (name: string, o: M) =>
      runCli(async () => {
        const res = await connectCoordinator(o).repositoryStats({ name, ...jobOptions(o) });
        printReport(o, res, (r) =>
          table(
            ["SNAPSHOTS", "LOGICAL", "UNIQUE", "STORED", "DEDUP", "COMPRESSION"],
            [
              [
                Number(r.snapshots),
                formatBytes(Number(r.logicalBytes)),
                formatBytes(Number(r.uniqueBytes)),
                formatBytes(Number(r.storedBytes)),
                `${r.dedupRatio.toFixed(2)}x`,
                `${r.compressionRatio.toFixed(2)}x`,
              ],
            ],
          ),
        );
      }, o),
  );

  registerRestoreCommands(program);
}

type R = O & { host?: string; wait?: boolean; format?: string };

/**
 * Follows a restore job as `backup now --wait` follows a backup (progress bar, `--json` prints the
 * final job), or with `--no-wait` prints its id.
 */
async function followRestore(client: CoordinatorClient, jobId: string, o: R): Promise<void> {
  if (o.wait === false) return output(o.json, { jobId }, () => queuedLine({ jobId } as JobSummary));
  finish(await watchJob(client, jobId, o.json), o.json);
}

/** A restore command: the host it runs on, and whether to follow it. */
function restoreCommand(c: Command): Command {
  return withConnectOptions(
    c
      .option(
        "--host <id>",
        "the host whose agent writes it (default: where the VM is, else its last backup's host)",
      )
      .option("--no-wait", "queue the job and return its id"),
  );
}

/** `cairn restore disk|vm`: restore jobs run by an agent through the coordinator (docs/restore.md §1). */
function registerRestoreCommands(program: Command): void {
  const restore = program
    .command("restore")
    .description("restore from snapshots the coordinator knows, as jobs on an agent");
  restoreCommand(
    restore
      .command("disk <snapshot> <disk>")
      .description("write one disk of a snapshot to a file or block device on a host")
      .requiredOption("--to <path>", "absolute destination path on that host (file or block device)")
      .option("--format <f>", "raw | qcow2", "raw")
      .option("--force", "replace an existing file, or write over a block device"),
  ).action((snapshot: string, disk: string, o: R & { to: string; force?: boolean }) =>
    runCli(async () => {
      const client = connectCoordinator(o);
      const { jobId } = await client.restoreDisk({
        snapshotId: snapshot,
        diskTarget: disk,
        hostId: o.host ?? "",
        destination: o.to,
        format: o.format ?? "raw",
        overwrite: Boolean(o.force),
      });
      await followRestore(client, jobId, o);
    }, o),
  );
  restoreCommand(
    restore
      .command("vm <snapshot>")
      .description("define a new domain from a snapshot (or overwrite the original with --in-place --force)")
      .option("--name <name>", "name of the new domain (default: <original>-restored)")
      .option("--storage <dir>", "directory on the host for the disks (default: the original's)")
      .option("--pool <pool>", "libvirt storage pool for the disks instead of a directory")
      .option("--format <f>", "qcow2 | raw", "qcow2")
      .option("--start", "start the domain once defined")
      .option("--in-place", "overwrite the original domain's disks (it must be shut off; needs --force)")
      .option("--force", "with --in-place: confirm overwriting the original"),
  ).action(
    (
      snapshot: string,
      o: R & {
        name?: string;
        storage?: string;
        pool?: string;
        start?: boolean;
        inPlace?: boolean;
        force?: boolean;
      },
    ) =>
      runCli(async () => {
        if (o.storage && o.pool)
          throw new CairnError("invalid-argument", "--storage and --pool exclude each other");
        if (o.inPlace && !o.force)
          throw new CairnError("invalid-argument", "--in-place overwrites the original domain's disks", {
            hint: "shut it off and add --force to confirm",
          });
        if (o.inPlace && (o.name || o.storage || o.pool))
          throw new CairnError("invalid-argument", "--in-place excludes --name, --storage and --pool");
        const client = connectCoordinator(o);
        const { jobId } = await client.restoreVm({
          snapshotId: snapshot,
          hostId: o.host ?? "",
          newName: o.name ?? "",
          destinationDir: o.storage ?? "",
          pool: o.pool ?? "",
          format: o.format ?? "qcow2",
          start: Boolean(o.start),
          inPlace: Boolean(o.inPlace),
        });
        await followRestore(client, jobId, o);
      }, o),
  );
}
