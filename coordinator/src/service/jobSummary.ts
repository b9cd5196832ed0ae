import type { JobSummary } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { reportOf } from "../maintenance/maintenanceTask.js";
import { outcomeOf } from "../restore/restoreTask.js";
import type { JobProgress, JobRecord } from "../store/records.js";

export function jobSummary(j: JobRecord, progress: JobProgress | undefined): JobSummary {
  return {
    jobId: j.id,
    vmUuid: j.vmUuid,
    vmName: j.vmName,
    state: j.state === "running" && j.phase ? `running:${j.phase}` : j.state,
    attempt: j.attempt,
    reason: j.reason,
    createdMs: BigInt(j.createdMs),
    progress: progress
      ? {
          bytesDone: BigInt(Math.round(progress.bytesDone)),
          bytesTotal: BigInt(Math.round(progress.bytesTotal)),
          rate: progress.rate,
          etaSeconds: progress.etaSeconds,
          phase: progress.phase,
        }
      : undefined,
    hostId: j.hostId,
    policy: j.policy ?? "",
    mode: j.kind === "backup" ? j.mode : "",
    snapshotId: j.snapshotId ?? "",
    updatedMs: BigInt(j.updatedMs),
    repository: j.repository,
    diskKinds: j.diskKinds,
    kind: j.kind,
    report: reportOf(j),
    transfer: j.transfer
      ? { path: j.transfer.path, readerHostId: j.transfer.readerHostId, reason: j.transfer.reason }
      : undefined,
    restore: outcomeOf(j),
  };
}
