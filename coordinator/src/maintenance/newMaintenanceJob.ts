import { newJobRecord } from "../jobs/newJob.js";
import { isInPlace, isRestoreKind } from "../restore/restoreTask.js";
import type { JobRecord, MaintenanceKind } from "../store/records.js";
import type { StoredTask } from "./maintenanceTask.js";

/**
 * Maintenance jobs wait for no concurrency limit of their own: they are serialized per repository
 * (maintenanceKey) and guarded by the repository's locks, and what they cost is on the agent's side.
 */
const UNLIMITED = { perHost: 1_000, perRepository: 10_000, global: 100_000 };

export function newMaintenanceJob(
  kind: MaintenanceKind,
  repository: string,
  task: StoredTask,
  opts: {
    nowMs: number;
    maxAttempts: number;
    reason: string;
    trigger: JobRecord["trigger"];
    policy?: string | null;
    /** The agent to run it on; "" lets the scheduler choose when it dispatches. */
    hostId?: string;
    priority?: number;
  },
): JobRecord {
  return newJobRecord(
    {
      kind,
      vmUuid: "",
      vmName: "",
      hostId: opts.hostId ?? "",
      policy: opts.policy ?? null,
      repository,
      // Backup fields: unused by maintenance.
      mode: "auto",
      quiesce: "off",
      trigger: opts.trigger,
      priority: opts.priority ?? 50,
      limits: { ...UNLIMITED },
      bandwidthBytesPerSecond: 0,
      task,
    },
    opts,
  );
}

/**
 * What a job must not share with another running job: its VM for a backup and for an in-place
 * restore (one job per VM), its repository for maintenance (one maintenance job per repository at
 * a time); any other restore only itself (it writes somewhere new).
 */
export function exclusivityKey(
  job: Pick<JobRecord, "id" | "kind" | "vmUuid" | "repository" | "task">,
): string {
  if (job.kind === "backup" || isInPlace(job)) return job.vmUuid;
  return isRestoreKind(job.kind) ? `restore:${job.id}` : `repository:${job.repository}`;
}
