import { snapshotKey } from "../layout.js";
import { acquireLock, type LockOptions } from "../locks/RepositoryLock.js";
import type { Repository } from "../Repository.js";
import {
  type RetentionDecision,
  type RetentionPolicy,
  selectForRetention,
} from "../retention/selectForRetention.js";

export interface PruneOptions {
  /** Restrict to one VM (retention is per VM); default all snapshots together. */
  vmUuid?: string;
  dryRun?: boolean;
  signal?: AbortSignal;
  lock?: LockOptions;
}

/**
 * Applies a retention policy: deletes the manifests selectForRetention drops, under the exclusive
 * lock. Chunks are freed by a later collectGarbage.
 */
export async function pruneSnapshots(
  repo: Repository,
  policy: RetentionPolicy,
  options: PruneOptions = {},
): Promise<RetentionDecision> {
  const { signal } = options;
  const lock = await acquireLock(repo.store, "exclusive", "prune", { ...options.lock, signal });
  try {
    const all = await repo.listSnapshots(signal);
    const mine = options.vmUuid === undefined ? all : all.filter((m) => m.vm.uuid === options.vmUuid);
    const decision = selectForRetention(
      mine.map((m) => ({ id: m.id, time: new Date(m.startedAt), protected: m.protected })),
      policy,
    );
    if (!options.dryRun) {
      const byId = new Map(mine.map((m) => [m.id, m]));
      for (const id of decision.remove) {
        await repo.store.delete(snapshotKey(id), { signal });
        // After the manifest: a marker left by a crash here names no snapshot, so readers skip it.
        const m = byId.get(id);
        if (m) await repo.deleteVmMarker(m, signal);
      }
    }
    return decision;
  } finally {
    await lock.release();
  }
}
