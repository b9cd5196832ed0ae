import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { JobRecord } from "../backup/jobRecord.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { deleteCheckpointSafely } from "./deleteCheckpointSafely.js";

/**
 * Cleans up libvirt after a live backup whose process died: ends its backup job (only one whose
 * NBD socket lives in the job's directory is ours) and removes the checkpoint an unsealed attempt
 * created (its bitmap merges into its parent, so the chain stays valid). The caller deletes the
 * job directory (scratch images, socket) afterwards.
 */
export async function recoverLiveJob(
  deps: { hypervisor: Hypervisor; log: Logger },
  jobDir: string,
  rec: JobRecord,
  signal: AbortSignal,
): Promise<{ endedBackupJob: boolean; removedCheckpoint: string | null }> {
  let endedBackupJob = false;
  let removedCheckpoint: string | null = null;
  const job = await deps.hypervisor.backupJob(rec.domain, signal);
  if (job?.socket?.startsWith(`${jobDir}/`)) {
    await deps.hypervisor.endBackup(rec.domain, signal);
    endedBackupJob = true;
  }
  if (rec.checkpoint && !rec.sealed) {
    const exists = (await deps.hypervisor.listCheckpoints(rec.domain, signal)).some(
      (c) => c.name === rec.checkpoint,
    );
    if (exists) {
      await deleteCheckpointSafely(deps, rec.domain, rec.checkpoint, signal);
      removedCheckpoint = rec.checkpoint;
    }
  }
  return { endedBackupJob, removedCheckpoint };
}
