import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { ownerAlive, readJobRecord } from "../backup/jobRecord.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { recoverLiveJob } from "../live/recoverLiveJob.js";
import { recoverOfflineJob } from "../offline/recoverOfflineJob.js";

export interface RecoveredJob {
  jobId: string;
  domain: string;
  endedBackupJob: boolean;
  removedCheckpoint: string | null;
  /** Offline jobs: orphan qemu-nbd pids ended, "image:bitmap" removed. */
  endedExports?: number[];
  removedBitmaps?: string[];
}

export interface RecoverOptions {
  /**
   * A job directory without a record is a leftover only once this old (default 60 s): a backup
   * makes its directory a moment before its record, and the daemon and the local CLI share the
   * work dir, so a young one may belong to a backup being planned right now.
   */
  recordlessAfterMs?: number;
  /** The daemon's watcher: jobs of this process are running, not interrupted. */
  watching?: boolean;
  /** Only these job directory names (the watcher passes the ones whose owner it saw die). */
  only?: ReadonlySet<string>;
}

/**
 * Cleans up after backup jobs whose process died (kill -9, crash, power loss), at agent start and
 * from the daemon's watcher: live jobs through recoverLiveJob (libvirt's backup job, the unsealed
 * checkpoint), offline ones through recoverOfflineJob (orphan qemu-nbd, added bitmaps, redefined
 * checkpoint), then the job directory (scratch images, sockets). A job whose owner still runs
 * (another agent process, or the local CLI, sharing the work dir) is left alone; a job whose
 * cleanup fails keeps its directory and is retried.
 */
export async function recoverInterruptedJobs(
  deps: { hypervisor: Hypervisor; log: Logger },
  workDir: string,
  signal: AbortSignal,
  opts: RecoverOptions = {},
): Promise<RecoveredJob[]> {
  const jobsDir = join(workDir, "jobs");
  const names = await readdir(jobsDir).catch(() => [] as string[]);
  const out: RecoveredJob[] = [];
  for (const name of names) {
    if (opts.only && !opts.only.has(name)) continue;
    const dir = join(jobsDir, name);
    const rec = await readJobRecord(dir);
    if (rec) {
      if (opts.watching && rec.pid === process.pid) continue;
      if (rec.pid !== process.pid && ownerAlive(rec)) continue;
    } else {
      const age = await stat(dir).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age < (opts.recordlessAfterMs ?? 60_000)) continue;
    }
    const result: RecoveredJob = {
      jobId: rec?.jobId ?? name,
      domain: rec?.domain ?? "",
      endedBackupJob: false,
      removedCheckpoint: null,
    };
    if (rec) {
      try {
        if (rec.offline) {
          const r = await recoverOfflineJob(deps, { ...rec, offline: rec.offline }, signal);
          result.removedCheckpoint = r.removedCheckpoint;
          result.endedExports = r.endedExports;
          result.removedBitmaps = r.removedBitmaps;
        } else {
          Object.assign(result, await recoverLiveJob(deps, dir, rec, signal));
        }
      } catch (err) {
        if (!isCairnError(err, "not-found")) {
          deps.log.error(
            { jobId: rec.jobId, domain: rec.domain, err },
            "could not clean up an interrupted job; will retry",
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
