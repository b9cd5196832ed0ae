import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RunMaintenanceRequest } from "../../../shared/src/gen/cairn/v1/agent.js";
import type { MaintenanceReport } from "../../../shared/src/gen/cairn/v1/common.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneVms } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { repositoryStats } from "../../../shared/src/repository/stats/repositoryStats.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";

export type MaintenanceTask = NonNullable<RunMaintenanceRequest["task"]>;

export interface MaintenanceTaskOptions {
  signal: AbortSignal;
  /** How long prune and GC wait for the exclusive lock while backups hold shared ones. */
  exclusiveLockWaitMs: number;
}

/**
 * One repository maintenance task (format §9) on an open repository, reported in wire form. Every
 * task is safe to run again: a re-dispatched job after a lost stream repeats it, never harms.
 */
export async function runMaintenanceTask(
  repo: Repository,
  task: MaintenanceTask,
  options: MaintenanceTaskOptions,
): Promise<MaintenanceReport> {
  const { signal } = options;
  const exclusive = { waitMs: options.exclusiveLockWaitMs };
  switch (task.$case) {
    case "verify": {
      const t = task.value;
      const count = Math.max(t.readDataSlices, 1);
      if (t.readDataSlice >= count)
        throw new CairnError(
          "invalid-argument",
          `read_data_slice ${t.readDataSlice} is not below read_data_slices ${count}`,
        );
      const slice = { index: t.readDataSlice, count };
      const r = await verifyRepository(repo, { readData: t.readData, readDataSlice: slice, signal });
      return {
        report: {
          $case: "verify",
          value: {
            ok: r.ok,
            snapshotsChecked: BigInt(r.snapshots),
            chunksChecked: BigInt(r.chunksReferenced),
            chunksRead: BigInt(r.chunksRead),
            readDataSlice: slice.index,
            readDataSlices: slice.count,
            problems: r.problems.map(
              (p) => `${p.kind} ${p.snapshotId}${p.disk ? `/${p.disk}` : ""}: ${p.message}`,
            ),
          },
        },
      };
    }
    case "prune": {
      const t = task.value;
      const r = await pruneVms(
        repo,
        t.targets.map((x) => ({ vmUuid: x.vmUuid, policy: x.retention ?? {} })),
        { dryRun: t.dryRun, signal, lock: exclusive },
      );
      return {
        report: {
          $case: "prune",
          value: { removedSnapshotIds: r.remove, kept: BigInt(r.kept), dryRun: t.dryRun },
        },
      };
    }
    case "gc": {
      const t = task.value;
      const r = await collectGarbage(repo, {
        dryRun: t.dryRun,
        ...(t.noRepack ? { repack: false } : {}),
        signal,
        lock: exclusive,
      });
      return {
        report: {
          $case: "gc",
          value: {
            chunksDeleted: BigInt(r.chunksDeleted),
            bytesFreed: BigInt(r.bytesFreed),
            packsDeleted: BigInt(r.packsDeleted),
            packBytesUnreferenced: BigInt(r.packBytesUnreferenced),
            packsRepacked: BigInt(r.packsRepacked),
            packBytesRepacked: BigInt(r.packBytesRepacked),
            dryRun: t.dryRun,
          },
        },
      };
    }
    case "stats": {
      const s = await repositoryStats(repo, signal);
      return {
        report: {
          $case: "stats",
          value: {
            snapshots: BigInt(s.snapshots),
            logicalBytes: BigInt(s.logicalBytes),
            uniqueBytes: BigInt(s.uniqueBytes),
            storedBytes: BigInt(s.storedBytes),
            dedupRatio: s.dedupRatio,
            compressionRatio: s.compressionRatio,
          },
        },
      };
    }
    case "scan": {
      const snaps = await repo.listSnapshots(signal);
      return { report: { $case: "scan", value: { manifestsJson: snaps.map((m) => JSON.stringify(m)) } } };
    }
  }
}
