import { CHUNKS_PREFIX, PACKS_PREFIX } from "../layout.js";
import type { Repository } from "../Repository.js";

export interface RepositoryStats {
  snapshots: number;
  /** Sum over restore points of their non-zero chunk bytes (what a full copy of each would hold). */
  logicalBytes: number;
  /** Plaintext bytes of distinct referenced chunks. */
  uniqueBytes: number;
  /** Bytes of all stored chunk objects and packs (compressed, encrypted, incl. unreferenced). */
  storedBytes: number;
  /** Loose chunk objects (format version 1). */
  chunkObjects: number;
  /** Packs (format version 2). */
  packObjects: number;
  dedupRatio: number;
  compressionRatio: number;
}

export async function repositoryStats(repo: Repository, signal?: AbortSignal): Promise<RepositoryStats> {
  const snaps = await repo.listSnapshots(signal);
  let logical = 0;
  const unique = new Map<string, number>();
  for (const m of snaps) {
    for (const d of m.disks) {
      const idx = await repo.readIndex(d.index, `snapshot ${m.id} disk ${d.target}`, signal);
      for (const { index, id } of idx.entries()) {
        if (id === undefined) continue;
        const len = idx.lengthOf(index);
        logical += len;
        unique.set(id, len);
      }
    }
  }
  let stored = 0;
  let objects = 0;
  for await (const o of repo.store.list(CHUNKS_PREFIX, { signal })) {
    stored += o.size;
    objects++;
  }
  let packs = 0;
  for await (const o of repo.store.list(PACKS_PREFIX, { signal })) {
    stored += o.size;
    packs++;
  }
  const uniqueBytes = [...unique.values()].reduce((a, b) => a + b, 0);
  return {
    snapshots: snaps.length,
    logicalBytes: logical,
    uniqueBytes,
    storedBytes: stored,
    chunkObjects: objects,
    packObjects: packs,
    dedupRatio: uniqueBytes > 0 ? logical / uniqueBytes : 1,
    compressionRatio: stored > 0 ? uniqueBytes / stored : 1,
  };
}
