import { CairnError } from "../../errors/CairnError.js";
import {
  CHUNKS_PREFIX,
  INDEXES_PREFIX,
  idFromKey,
  LOCKS_PREFIX,
  PACK_INDEXES_PREFIX,
  PACKS_PREFIX,
  SNAPSHOTS_PREFIX,
  VM_SNAPSHOTS_PREFIX,
} from "../layout.js";
import { acquireLock, type LockOptions } from "../locks/RepositoryLock.js";
import type { Repository } from "../Repository.js";
import type { RepackPolicy } from "./choosePacksToRepack.js";
import { type PackSweepReport, sweepPacks } from "./sweepPacks.js";

export interface GcOptions {
  /** Unreferenced objects younger than this (before GC started) are kept. Default 1 h. */
  graceMs?: number;
  dryRun?: boolean;
  /** When packs that still hold live chunks are rewritten (default DEFAULT_REPACK_POLICY); false: never. */
  repack?: RepackPolicy | false;
  signal?: AbortSignal;
  lock?: LockOptions;
}

export interface GcReport extends PackSweepReport {
  snapshots: number;
  chunksReferenced: number;
  chunksDeleted: number;
  indexesDeleted: number;
  bytesFreed: number;
  /** Unreferenced but inside the grace period. */
  chunksSpared: number;
  /** Staged or half-written temporaries of writers that died (local stores), past the grace period. */
  temporariesDeleted: number;
}

interface SweepsTemporaries {
  sweepTemporaries(olderThanMs: number, signal?: AbortSignal, under?: string): Promise<number>;
}

/**
 * Lock records are written by acquirers while another process holds the exclusive lock (acquiring
 * is write, then check: format §8), so a temporary under locks/ may belong to a live acquirer even
 * now. Only such leftovers older than this are swept, whatever the grace period.
 */
const LOCK_TEMPORARY_MIN_AGE_MS = 60 * 60 * 1000;

/**
 * Mark and sweep (format §9) under the exclusive lock, so no backup runs meanwhile. Marks from
 * sealed manifests only; any unreadable manifest or index stops GC before deleting anything,
 * because its references are unknown. Objects modified within the grace period are never swept.
 */
export async function collectGarbage(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const { signal } = options;
  const started = Date.now();
  const cutoff = started - (options.graceMs ?? 3_600_000);
  const lock = await acquireLock(repo.store, "exclusive", "garbage collection", { ...options.lock, signal });
  try {
    const marked = new Set<string>();
    const markedIndexes = new Set<string>();
    const ids: string[] = [];
    for await (const o of repo.store.list(SNAPSHOTS_PREFIX, { signal }))
      ids.push(o.key.slice(SNAPSHOTS_PREFIX.length));
    for (const id of ids) {
      const m = await repo.showSnapshot(id, signal).catch((e: unknown) => {
        throw new CairnError(
          "failed-precondition",
          `GC stopped before deleting anything: snapshot ${id} is unreadable`,
          {
            cause: e,
            hint: "run verify, fix or remove the damaged snapshot, then run GC again",
          },
        );
      });
      for (const d of m.disks) {
        markedIndexes.add(d.index);
        const idx = await repo
          .readIndex(d.index, `snapshot ${id} disk ${d.target}`, signal)
          .catch((e: unknown) => {
            throw new CairnError(
              "failed-precondition",
              `GC stopped before deleting anything: an index of snapshot ${id} is unreadable`,
              {
                cause: e,
                hint: "run verify, fix or remove the damaged snapshot, then run GC again",
              },
            );
          });
        for (const e of idx.entries()) if (e.id !== undefined) marked.add(e.id);
      }
    }
    const report: GcReport = {
      snapshots: ids.length,
      chunksReferenced: marked.size,
      chunksDeleted: 0,
      indexesDeleted: 0,
      bytesFreed: 0,
      chunksSpared: 0,
      temporariesDeleted: 0,
      ...(await sweepPacks(repo, marked, cutoff, { dryRun: options.dryRun, repack: options.repack, signal })),
    };
    report.bytesFreed += report.packBytesFreed;
    for (const [prefix, keep, field] of [
      [INDEXES_PREFIX, markedIndexes, "indexesDeleted"],
      [CHUNKS_PREFIX, marked, "chunksDeleted"],
    ] as const) {
      const victims: Array<{ key: string; size: number }> = [];
      for await (const o of repo.store.list(prefix, { signal })) {
        const id = idFromKey(o.key);
        if (!id || keep.has(id)) continue;
        if (o.lastModified.getTime() >= cutoff) {
          if (prefix === CHUNKS_PREFIX) report.chunksSpared++;
          continue;
        }
        victims.push(o);
      }
      for (const v of victims) {
        if (!options.dryRun) await repo.store.delete(v.key, { signal });
        report[field]++;
        report.bytesFreed += v.size;
      }
    }
    if (!options.dryRun) {
      // Markers whose snapshot is gone (a prune or a backup that died between its puts): readers
      // skip them already. Deleting a marker is always safe: its snapshot would just read as unmarked.
      const sealed = new Set(ids);
      const orphans: string[] = [];
      for await (const o of repo.store.list(VM_SNAPSHOTS_PREFIX, { signal }))
        if (!sealed.has(o.key.slice(o.key.lastIndexOf("/") + 1))) orphans.push(o.key);
      for (const key of orphans) await repo.store.delete(key, { signal });
    }
    // A writer that died before commitStaged() leaves invisible temporaries: under the exclusive lock
    // no writer is running, so those past the grace period are garbage (lock records aside).
    const sweepable = repo.store as Partial<SweepsTemporaries>;
    if (!options.dryRun && typeof sweepable.sweepTemporaries === "function") {
      const age = Math.max(0, started - cutoff);
      for (const prefix of [
        SNAPSHOTS_PREFIX,
        INDEXES_PREFIX,
        CHUNKS_PREFIX,
        PACKS_PREFIX,
        PACK_INDEXES_PREFIX,
        VM_SNAPSHOTS_PREFIX,
      ])
        report.temporariesDeleted += await sweepable.sweepTemporaries(age, signal, prefix);
      report.temporariesDeleted += await sweepable.sweepTemporaries(
        Math.max(age, LOCK_TEMPORARY_MIN_AGE_MS),
        signal,
        LOCKS_PREFIX,
      );
    }
    return report;
  } finally {
    await lock.release();
  }
}
