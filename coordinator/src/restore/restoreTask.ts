import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RestoreDiskRequest, RestoreVmRequest } from "../../../shared/src/gen/cairn/v1/agent.js";
import { RestoreOutcome } from "../../../shared/src/gen/cairn/v1/common.js";
import {
  CoordinatorServiceRestoreDiskRequest,
  CoordinatorServiceRestoreVmRequest,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import type { JobRecord, RestoreKind } from "../store/records.js";

export const RESTORE_KINDS: readonly RestoreKind[] = ["restore-disk", "restore-vm"];

export function isRestoreKind(kind: string): kind is RestoreKind {
  return (RESTORE_KINDS as readonly string[]).includes(kind);
}

/** A restore job's request as validated at the edge, and where its host opens the repository. */
export type RestoreRequest =
  | { kind: "restore-disk"; request: CoordinatorServiceRestoreDiskRequest }
  | { kind: "restore-vm"; request: CoordinatorServiceRestoreVmRequest };

/** JobRecord.task of a restore job: the request in proto JSON and the location (docs/restore.md §1). */
interface StoredRestoreTask {
  request: unknown;
  location: string;
}

export function storeRestoreTask(r: RestoreRequest, location: string): StoredRestoreTask {
  const request =
    r.kind === "restore-disk"
      ? CoordinatorServiceRestoreDiskRequest.toJSON(r.request)
      : CoordinatorServiceRestoreVmRequest.toJSON(r.request);
  return { request, location };
}

/** What the agent is asked to do for a restore job record (the same request on every attempt). */
export function agentRestoreRequest(
  job: Pick<JobRecord, "id" | "kind" | "task">,
): { kind: "restore-disk"; request: RestoreDiskRequest } | { kind: "restore-vm"; request: RestoreVmRequest } {
  const stored = (job.task ?? {}) as Partial<StoredRestoreTask>;
  const location = stored.location ?? "";
  if (!location) throw new CairnError("internal", `restore job ${job.id} has no repository location`);
  if (job.kind === "restore-disk") {
    const r = CoordinatorServiceRestoreDiskRequest.fromJSON(stored.request ?? {});
    return {
      kind: job.kind,
      request: {
        jobId: job.id,
        repository: location,
        snapshotId: r.snapshotId,
        diskTarget: r.diskTarget,
        destination: r.destination,
        format: r.format,
        overwrite: r.overwrite,
      },
    };
  }
  if (job.kind === "restore-vm") {
    const r = CoordinatorServiceRestoreVmRequest.fromJSON(stored.request ?? {});
    return {
      kind: job.kind,
      request: {
        jobId: job.id,
        repository: location,
        snapshotId: r.snapshotId,
        newName: r.newName,
        destinationDir: r.destinationDir,
        pool: r.pool,
        format: r.format,
        start: r.start,
        inPlace: r.inPlace,
      },
    };
  }
  throw new CairnError("internal", `job ${job.id} is a ${job.kind} job, not a restore`);
}

/** Whether a restore job overwrites its VM in place (the ledger then breaks its chains). */
export function isInPlace(job: Pick<JobRecord, "kind" | "task">): boolean {
  if (job.kind !== "restore-vm") return false;
  const stored = (job.task ?? {}) as Partial<StoredRestoreTask>;
  return CoordinatorServiceRestoreVmRequest.fromJSON(stored.request ?? {}).inPlace;
}

export function storeOutcome(o: RestoreOutcome): unknown {
  return RestoreOutcome.toJSON(o);
}

/** A succeeded restore job's outcome, from its record. */
export function outcomeOf(job: Pick<JobRecord, "restore">): RestoreOutcome | undefined {
  return job.restore === undefined || job.restore === null ? undefined : RestoreOutcome.fromJSON(job.restore);
}

/** One line for a job's reason: what the restore wrote. */
export function describeOutcome(o: RestoreOutcome): string {
  const x = o.outcome;
  if (x?.$case === "disk")
    return `restored to ${x.value.destination} (${x.value.format}, ${x.value.targetKind}, ${x.value.bytesWritten} bytes written)`;
  if (x?.$case === "vm")
    return `${x.value.inPlace ? "restored in place" : "defined"} domain ${x.value.domainName} (${x.value.domainUuid}): ${x.value.disks
      .map((d) => `${d.target} → ${d.pool ? `${d.pool}/${d.volume}` : d.path}`)
      .join(", ")}${x.value.started ? "; started" : ""}`;
  return "restored";
}
