import type { BackupDeps } from "../backup/BackupRequest.js";
import type { BackupPlan } from "../backup/planDisks.js";
import type { LiveBitmap } from "../hypervisor/Hypervisor.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import { deleteCheckpointSafely } from "./deleteCheckpointSafely.js";

/**
 * After QEMU stopped uncleanly, checkpoints' bitmaps are missing (never saved) or inconsistent: the
 * checkpoints that own them can never drive an incremental again. Delete those checkpoints (metadata
 * only if libvirt refuses) and the inconsistent bitmaps themselves, so the disks' next chains start
 * clean. Checkpoints a planned incremental still uses are kept. Returns the checkpoints removed.
 */
export async function cleanBrokenCheckpoints(
  deps: Pick<BackupDeps, "hypervisor" | "log">,
  domain: string,
  checkpoints: readonly CheckpointInfo[],
  liveBitmaps: ReadonlyMap<string, readonly LiveBitmap[]> | undefined,
  plan: BackupPlan,
  signal: AbortSignal,
): Promise<string[]> {
  if (!liveBitmaps) return [];
  const inUse = new Set(plan.disks.map((d) => d.incrementalFrom).filter((c): c is string => c !== null));
  const usable = (target: string, name: string) =>
    liveBitmaps.get(target)?.some((b) => b.name === name && !b.inconsistent) ?? false;
  const broken = checkpoints.filter(
    (c) => !inUse.has(c.name) && Object.entries(c.bitmaps).some(([t, b]) => !usable(t, b)),
  );
  const anyInconsistent = [...liveBitmaps.values()].some((l) => l.some((b) => b.inconsistent));
  if (broken.length === 0 && !anyInconsistent) return [];
  for (const c of broken) await deleteCheckpointSafely(deps, domain, c.name, signal);
  const removed = anyInconsistent ? await deps.hypervisor.removeInconsistentBitmaps(domain, signal) : [];
  deps.log.warn(
    { domain, checkpoints: broken.map((c) => c.name), bitmaps: removed },
    "removed checkpoints whose bitmaps are missing or inconsistent",
  );
  return broken.map((c) => c.name);
}
