import { snapshotKey } from "../layout.js";
import { acquireLock, type LockOptions } from "../locks/RepositoryLock.js";
import type { SnapshotManifest } from "../manifest/SnapshotManifest.js";
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
export function pruneSnapshots(
  repo: Repository,
  policy: RetentionPolicy,
  options: PruneOptions = {},
): Promise<RetentionDecision> {
  return underPruneLock(repo, options, async (all) => {
    const mine = options.vmUuid === undefined ? all : all.filter((m) => m.vm.uuid === options.vmUuid);
    const decision = decide(mine, policy);
    if (!options.dryRun) await removeSnapshots(repo, mine, decision.remove, options.signal);
    return decision;
  });
}

/**
 * Applies each VM's own retention in one pass under one exclusive lock (what a prune job does for
 * every VM of a repository). Snapshots of VMs not named are kept.
 */
export function pruneVms(
  repo: Repository,
  targets: readonly { vmUuid: string; policy: RetentionPolicy }[],
  options: Omit<PruneOptions, "vmUuid"> = {},
): Promise<{ remove: string[]; kept: number }> {
  return underPruneLock(repo, options, async (all) => {
    const remove = targets.flatMap(
      (t) =>
        decide(
          all.filter((m) => m.vm.uuid === t.vmUuid),
          t.policy,
        ).remove,
    );
    if (!options.dryRun) await removeSnapshots(repo, all, remove, options.signal);
    return { remove, kept: all.length - remove.length };
  });
}

async function underPruneLock<T>(
  repo: Repository,
  options: Pick<PruneOptions, "signal" | "lock">,
  fn: (all: SnapshotManifest[]) => Promise<T>,
): Promise<T> {
  const { signal } = options;
  const lock = await acquireLock(repo.store, "exclusive", "prune", { ...options.lock, signal });
  try {
    return await fn(await repo.listSnapshots(signal));
  } finally {
    await lock.release();
  }
}

function decide(manifests: readonly SnapshotManifest[], policy: RetentionPolicy): RetentionDecision {
  return selectForRetention(
    manifests.map((m) => ({ id: m.id, time: new Date(m.startedAt), protected: m.protected })),
    policy,
  );
}

async function removeSnapshots(
  repo: Repository,
  manifests: readonly SnapshotManifest[],
  ids: readonly string[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const byId = new Map(manifests.map((m) => [m.id, m]));
  for (const id of ids) {
    await repo.store.delete(snapshotKey(id), { signal });
    // After the manifest: a marker left by a crash here names no snapshot, so readers skip it.
    const m = byId.get(id);
    if (m) await repo.deleteVmMarker(m, signal);
  }
}
