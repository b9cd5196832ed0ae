import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { readJobRecord } from "../backup/jobRecord.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { deleteCheckpointSafely } from "./deleteCheckpointSafely.js";
import { isAlive } from "./isAlive.js";

export interface RecoveredJob {
  jobId: string;
  domain: string;
  endedBackupJob: boolean;
  removedCheckpoint: string | null;
}

/**
 * On agent start: clean up after backup jobs whose process died (kill -9, crash, power loss).
 * Ends their libvirt backup job, removes the checkpoint an unsealed attempt created (its bitmap
 * merges into its parent, so the chain stays valid), deletes orphan scratch files and sockets.
 * Jobs whose process is still alive (another agent process sharing the state dir) are left alone.
 */
export async function recoverInterruptedJobs(
  deps: { hypervisor: Hypervisor; log: Logger },
  workDir: string,
  signal: AbortSignal,
): Promise<RecoveredJob[]> {
  const jobsDir = join(workDir, "jobs");
  const names = await readdir(jobsDir).catch(() => [] as string[]);
  const out: RecoveredJob[] = [];
  for (const name of names) {
    const dir = join(jobsDir, name);
    const rec = await readJobRecord(dir);
    if (rec && rec.pid !== process.pid && isAlive(rec.pid)) continue;
    const result: RecoveredJob = {
      jobId: rec?.jobId ?? name,
      domain: rec?.domain ?? "",
      endedBackupJob: false,
      removedCheckpoint: null,
    };
    if (rec) {
      try {
        const job = await deps.hypervisor.backupJob(rec.domain, signal);
        // Only a job whose NBD socket lives in this job's directory is ours to end.
        if (job?.socket?.startsWith(`${dir}/`)) {
          await deps.hypervisor.endBackup(rec.domain, signal);
          result.endedBackupJob = true;
        }
        if (rec.checkpoint && !rec.sealed) {
          const exists = (await deps.hypervisor.listCheckpoints(rec.domain, signal)).some(
            (c) => c.name === rec.checkpoint,
          );
          if (exists) {
            await deleteCheckpointSafely(deps, rec.domain, rec.checkpoint, signal);
            result.removedCheckpoint = rec.checkpoint;
          }
        }
      } catch (err) {
        if (!isCairnError(err, "not-found")) {
          deps.log.error(
            { jobId: rec.jobId, domain: rec.domain, err },
            "could not clean up an interrupted job; will retry on next start",
          );
          continue;
        }
      }
    }
    await rm(dir, { recursive: true, force: true });
    deps.log.warn(result, "cleaned up an interrupted backup job");
    out.push(result);
  }
  return out;
}
