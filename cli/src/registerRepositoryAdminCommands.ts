import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";
import { type ConnectOptions, connectCoordinator, withConnectOptions } from "./connectCoordinator.js";
import { output, table, when } from "./output.js";
import { prepareDiskRestore } from "./prepareDiskRestore.js";

type O = ConnectOptions & { json?: boolean };

/** Coordinator-managed repositories (`cairn repo add|list|verify|prune|gc|stats`) and `cairn restore disk`. */
export function registerRepositoryAdminCommands(program: Command): void {
  const repo = program.commands.find((c) => c.name() === "repo") ?? program.command("repo");
  withConnectOptions(
    repo
      .command("add <name> <location>")
      .description("register an initialized repository with the coordinator"),
  ).action((name: string, location: string, o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).registerRepository({ name, location });
      output(
        o.json,
        { name, location, ...r },
        () => `repository ${name} ${r.created ? "registered" : "updated"}: ${location}\n`,
      );
    }, o),
  );
  withConnectOptions(repo.command("list").description("repositories the coordinator knows")).action((o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listRepositories({});
      output(o.json, r.repositories, () =>
        table(
          ["NAME", "LOCATION", "REGISTERED"],
          r.repositories.map((x) => [x.name, x.location, when(x.createdMs)]),
        ),
      );
    }, o),
  );
  withConnectOptions(
    repo
      .command("verify <name>")
      .description("check structure (and with --read-data every chunk)")
      .option("--read-data"),
  ).action((name: string, o: O & { readData?: boolean }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).verifyRepository({ name, readData: Boolean(o.readData) });
      output(o.json, r, () =>
        r.ok
          ? `repository ${name} OK: ${r.snapshotsChecked} snapshots, ${r.chunksChecked} chunks checked\n`
          : `repository ${name} has ${r.problems.length} problems:\n${r.problems.map((p) => `  ${p}`).join("\n")}\n`,
      );
      if (!r.ok)
        throw new CairnError("corrupt", `repository ${name} failed verification`, {
          hint: "see the problems above",
        });
    }, o),
  );
  withConnectOptions(
    repo
      .command("prune <name>")
      .description("apply each VM's policy retention")
      .option("--dry-run", "only show what would go"),
  ).action((name: string, o: O & { dryRun?: boolean }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).pruneRepository({ name, dryRun: Boolean(o.dryRun) });
      output(
        o.json,
        r,
        () =>
          `${o.dryRun ? "would remove" : "removed"} ${r.removedSnapshotIds.length} snapshots, kept ${r.kept}${
            r.removedSnapshotIds.length ? `:\n  ${r.removedSnapshotIds.join("\n  ")}` : ""
          }\n${o.dryRun ? "" : "space is freed by `cairn repo gc`\n"}`,
      );
    }, o),
  );
  withConnectOptions(
    repo
      .command("gc <name>")
      .description(
        "delete chunks no snapshot references; rewrite packs that are mostly unreferenced or small",
      )
      .option("--dry-run", "only show what would be deleted and rewritten")
      .option("--no-repack", "keep packs that still hold live chunks as they are"),
  ).action((name: string, o: O & { dryRun?: boolean; repack?: boolean }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).gcRepository({
        name,
        dryRun: Boolean(o.dryRun),
        noRepack: o.repack === false,
      });
      output(
        o.json,
        r,
        () =>
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
  withConnectOptions(repo.command("stats <name>").description("sizes, dedup and compression")).action(
    (name: string, o: O) =>
      runCli(async () => {
        const r = await connectCoordinator(o).repositoryStats({ name });
        output(o.json, r, () =>
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

  const restore = program.command("restore").description("restore from snapshots the coordinator knows");
  withConnectOptions(
    restore
      .command("disk <snapshot> <disk>")
      .description("write one disk of a snapshot to a file on this machine")
      .requiredOption("--to <path>", "destination file")
      .option("--format <f>", "raw | qcow2", "raw")
      .option("--force", "overwrite an existing file")
      .option("--passphrase-file <file>", "passphrase of an encrypted repository"),
  ).action(
    (
      snapshot: string,
      disk: string,
      o: O & { to: string; format: string; force?: boolean; passphraseFile?: string },
    ) =>
      runCli(async () => {
        const restore = prepareDiskRestore(o.to, { ...o, destinationFlag: "--to" });
        const s = await connectCoordinator(o).showSnapshot({ snapshotId: snapshot });
        await restore(s.repositoryLocation, snapshot, disk);
        output(
          o.json,
          { snapshot, disk, to: o.to, format: o.format },
          () => `restored ${disk} of ${snapshot} to ${o.to} (${o.format})\n`,
        );
      }, o),
  );
}
