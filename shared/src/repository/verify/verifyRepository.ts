import { CairnError } from "../../errors/CairnError.js";
import type { DiskIndex } from "../index/DiskIndex.js";
import { CHUNKS_PREFIX, idFromKey, PACK_INDEXES_PREFIX, PACKS_PREFIX, SNAPSHOTS_PREFIX } from "../layout.js";
import { acquireLock, type LockOptions } from "../locks/RepositoryLock.js";
import type { Repository } from "../Repository.js";

export interface VerifyProblem {
  kind: "manifest" | "index" | "pack-index" | "missing-chunk" | "corrupt-chunk";
  /** "" for a pack index (it belongs to no one snapshot). */
  snapshotId: string;
  disk?: string;
  offset?: number;
  chunkId?: string;
  message: string;
}

export interface VerifyReport {
  snapshots: number;
  disks: number;
  chunksReferenced: number;
  chunksRead: number;
  problems: VerifyProblem[];
  ok: boolean;
}

export interface VerifyOptions {
  /** Download every referenced chunk and recompute its id (`verify --read-data`). */
  readData?: boolean;
  /**
   * With readData: read only the chunks whose id falls in slice `index` of `count` (by the id's
   * first 32 bits; ids are SHA-256, so a slice is a uniform sample). Runs with index 0…count-1 read
   * every chunk once: a scheduled verify reads a share each time and all of it over the period.
   */
  readDataSlice?: { index: number; count: number };
  concurrency?: number;
  signal?: AbortSignal;
  /** The shared lock verify holds (default: wait up to 30 s for a prune or GC to finish). */
  lock?: LockOptions;
}

/**
 * Checks the repository's structure (format §9): manifests parse, indexes exist and match their
 * ids, every referenced chunk exists; with readData every chunk is also read and re-hashed.
 * Problems name snapshot, disk, offset and chunk. Never modifies the repository's data (it only
 * writes its lock).
 */
export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  // Shared, like a backup: a prune or GC running meanwhile would delete what was just listed, and
  // verify would report a snapshot retention removed as missing (seen in the coordinator's tests).
  const lock = await acquireLock(repo.store, "shared", "verify", {
    waitMs: 30_000,
    ...options.lock,
    signal: options.signal,
  });
  try {
    return await verifyLocked(repo, options);
  } finally {
    await lock.release();
  }
}

async function verifyLocked(repo: Repository, options: VerifyOptions): Promise<VerifyReport> {
  const { signal } = options;
  const stored = new Set<string>();
  for await (const o of repo.store.list(CHUNKS_PREFIX, { signal })) {
    const id = idFromKey(o.key);
    if (id) stored.add(id);
  }
  const problems: VerifyProblem[] = [];
  // Version 2 (format §6a): a chunk is stored when a pack index lists it in a pack that exists and
  // is long enough to hold its frame.
  const packSizes = new Map<string, number>();
  for await (const o of repo.store.list(PACKS_PREFIX, { signal })) {
    const id = idFromKey(o.key);
    if (id) packSizes.set(id, o.size);
  }
  for await (const o of repo.store.list(PACK_INDEXES_PREFIX, { signal })) {
    const indexId = o.key.slice(PACK_INDEXES_PREFIX.length);
    try {
      for (const r of await repo.readPackIndex(indexId, signal)) {
        const size = packSizes.get(r.pack);
        if (size === undefined) continue;
        for (const c of r.chunks) if (c.offset + c.length <= size) stored.add(c.id);
      }
    } catch (e) {
      if (e instanceof CairnError && e.code === "aborted") throw e;
      problems.push({ kind: "pack-index", snapshotId: "", message: (e as Error).message });
    }
  }
  const snapshotIds: string[] = [];
  for await (const o of repo.store.list(SNAPSHOTS_PREFIX, { signal }))
    snapshotIds.push(o.key.slice(SNAPSHOTS_PREFIX.length));
  snapshotIds.sort();

  /** chunk id → where it is referenced (for naming read-data failures). */
  const refs = new Map<string, Array<{ snapshotId: string; disk: string; offset: number }>>();
  let disks = 0;
  for (const snapshotId of snapshotIds) {
    let manifest: Awaited<ReturnType<Repository["showSnapshot"]>>;
    try {
      manifest = await repo.showSnapshot(snapshotId, signal);
    } catch (e) {
      if (e instanceof CairnError && e.code === "aborted") throw e;
      problems.push({ kind: "manifest", snapshotId, message: (e as Error).message });
      continue;
    }
    for (const d of manifest.disks) {
      disks++;
      let index: DiskIndex;
      try {
        index = await repo.readIndex(d.index, `snapshot ${snapshotId} disk ${d.target}`, signal);
      } catch (e) {
        if (e instanceof CairnError && e.code === "aborted") throw e;
        problems.push({ kind: "index", snapshotId, disk: d.target, message: (e as Error).message });
        continue;
      }
      for (const { index: i, id } of index.entries()) {
        if (id === undefined) continue;
        const offset = i * index.chunkSize;
        if (!stored.has(id)) {
          problems.push({
            kind: "missing-chunk",
            snapshotId,
            disk: d.target,
            offset,
            chunkId: id,
            message: `snapshot ${snapshotId} disk ${d.target} offset ${offset}: chunk ${id} is missing`,
          });
          continue;
        }
        const l = refs.get(id) ?? [];
        if (l.length === 0) refs.set(id, l);
        l.push({ snapshotId, disk: d.target, offset });
      }
    }
  }

  let chunksRead = 0;
  if (options.readData) {
    const slice = options.readDataSlice;
    const ids = [...refs.keys()].filter((id) => !slice || inSlice(id, slice));
    let next = 0;
    await Promise.all(
      Array.from({ length: options.concurrency ?? 8 }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          const where = refs.get(id)!;
          const first = where[0]!;
          try {
            await repo.readChunk(
              id,
              `snapshot ${first.snapshotId} disk ${first.disk} offset ${first.offset}`,
              signal,
            );
            chunksRead++;
          } catch (e) {
            if (e instanceof CairnError && e.code === "aborted") throw e;
            for (const w of where) {
              problems.push({
                kind: "corrupt-chunk",
                ...w,
                chunkId: id,
                message: `snapshot ${w.snapshotId} disk ${w.disk} offset ${w.offset}: ${(e as Error).message}`,
              });
            }
          }
        }
      }),
    );
  }
  return {
    snapshots: snapshotIds.length,
    disks,
    chunksReferenced: refs.size,
    chunksRead,
    problems,
    ok: problems.length === 0,
  };
}

/** Whether a chunk id belongs to slice `index` of `count` (format §9, verify). */
export function inSlice(id: string, slice: { index: number; count: number }): boolean {
  if (slice.count <= 1) return true;
  return Number.parseInt(id.slice(0, 8), 16) % slice.count === slice.index;
}
