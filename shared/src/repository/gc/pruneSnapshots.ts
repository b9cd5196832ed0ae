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
    if (!options.dryRun)
      for (const id of decision.remove) await repo.store.delete(snapshotKey(id), { signal });
    return decision;
  } finally {
    await lock.release();
  }
}

/**
 * Applies each VM's own retention in one pass under one exclusive lock (what a prune job does for
 * every VM of a repository). Snapshots of VMs not named are kept.
 */
export async function pruneVms(
  repo: Repository,
  targets: readonly { vmUuid: string; policy: RetentionPolicy }[],
  options: Omit<PruneOptions, "vmUuid"> = {},
): Promise<{ remove: string[]; kept: number }> {
  const { signal } = options;
  const lock = await acquireLock(repo.store, "exclusive", "prune", { ...options.lock, signal });
  try {
    const all = await repo.listSnapshots(signal);
    const remove: string[] = [];
    for (const t of targets) {
      const mine = all.filter((m) => m.vm.uuid === t.vmUuid);
      const decision = selectForRetention(
        mine.map((m) => ({ id: m.id, time: new Date(m.startedAt), protected: m.protected })),
        t.policy,
      );
      remove.push(...decision.remove);
    }
    if (!options.dryRun) for (const id of remove) await repo.store.delete(snapshotKey(id), { signal });
    return { remove, kept: all.length - remove.length };
  } finally {
    await lock.release();
  }
}
