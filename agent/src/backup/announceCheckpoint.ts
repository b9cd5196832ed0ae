import type { BackupRequest } from "./BackupRequest.js";
import type { BackupPlan } from "./planDisks.js";

/**
 * Tells the caller (the coordinator's ledger, through RunBackup's checkpoint_pending) which
 * checkpoint this job is about to make, before anything makes it: live and offline paths alike.
 */
export async function announceCheckpoint(
  req: Pick<BackupRequest, "onCheckpoint">,
  plan: BackupPlan,
  parent: string | undefined,
): Promise<void> {
  const name = plan.newCheckpoint;
  if (!name || !req.onCheckpoint) return;
  await req.onCheckpoint({
    name,
    parent,
    bitmaps: Object.fromEntries(plan.disks.filter((d) => d.bitmap).map((d) => [d.target, name])),
  });
}
