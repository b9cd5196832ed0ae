import type { RunBackupResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { type BackupResult, deferredCause } from "../backup/runBackup.js";
import { backupResultEvent } from "./backupEvents.js";

/** How a backup job ended here: sealed, or deferred to run later (maybe on another host). */
export type BackupJobEnd = { done: BackupResult } | { deferred: { cause: string; reason: string } };

export interface JobOutcome {
  ok: boolean;
  durationMs: number;
  bytesRead: number;
  bytesStored: number;
  freezeMs: number | undefined;
  /** CairnError code of a failure. */
  failure?: string;
}

/** The job's last event on RunBackup. */
export function backupEndEvent(jobId: string, end: BackupJobEnd): RunBackupResponse {
  return {
    jobId,
    event:
      "deferred" in end
        ? { $case: "deferred", value: end.deferred }
        : backupResultEvent(
            end.done.manifest,
            end.done.freezeWindowMs,
            end.done.checkpoint,
            end.done.prunedCheckpoints,
          ),
  };
}

/** Tells `onJobEnd` (metrics) how the job ended; never rejects. */
export function reportJobEnd(
  done: Promise<BackupJobEnd>,
  started: number,
  onJobEnd: ((o: JobOutcome) => void) | undefined,
): Promise<void> {
  const failed = (failure: string): JobOutcome => ({
    ok: false,
    durationMs: Date.now() - started,
    bytesRead: 0,
    bytesStored: 0,
    freezeMs: undefined,
    failure,
  });
  return done.then(
    (end) =>
      onJobEnd?.(
        "deferred" in end
          ? failed("deferred")
          : {
              ok: true,
              durationMs: Date.now() - started,
              bytesRead: end.done.manifest.stats.bytesRead,
              bytesStored: end.done.manifest.stats.bytesStored,
              freezeMs: end.done.freezeWindowMs,
            },
      ),
    (e) => onJobEnd?.(failed((e as { code?: string })?.code ?? "internal")),
  );
}

/** Runs a backup; a deferral (the domain moved or is migrating: nothing was changed) is an end, not a failure. */
export async function backupJobEnd(run: () => Promise<BackupResult>): Promise<BackupJobEnd> {
  try {
    return { done: await run() };
  } catch (err) {
    const cause = deferredCause(err);
    if (cause) return { deferred: { cause, reason: (err as Error).message } };
    throw err;
  }
}
