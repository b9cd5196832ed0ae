import type { BackupDeps } from "../backup/BackupRequest.js";
import type { HistoryEntry } from "../backup/pipeline/history/HistoryEntry.js";
import { type BackupPlan, chainRoot, checkpointsToPrune } from "../backup/planDisks.js";
import { deleteCheckpointSafely } from "./deleteCheckpointSafely.js";

/** After a sealed backup: keep each disk's chain root and the new checkpoint, delete Cairn's others. */
export async function pruneCheckpoints(
  deps: Pick<BackupDeps, "hypervisor" | "log">,
  domain: string,
  plan: BackupPlan,
  /** Oldest first, ending with the snapshot just sealed. */
  history: readonly HistoryEntry[],
  signal: AbortSignal,
): Promise<string[]> {
  if (!plan.newCheckpoint) return [];
  const latest = history.at(-1)!;
  const keep = new Set<string>([plan.newCheckpoint]);
  const byId = new Map(history.map((s) => [s.id, s]));
  for (const d of latest.disks) {
    const root = chainRoot(latest, d.target, byId)?.disks.find((e) => e.target === d.target)?.checkpoint;
    if (root) keep.add(root);
  }
  const cps = await deps.hypervisor.listCheckpoints(domain, signal);
  const prune = checkpointsToPrune(cps, [...keep]);
  for (const name of prune) await deleteCheckpointSafely(deps, domain, name, signal);
  return prune;
}
