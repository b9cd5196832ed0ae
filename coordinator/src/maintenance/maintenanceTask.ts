import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RunMaintenanceRequest } from "../../../shared/src/gen/cairn/v1/agent.js";
import {
  GcTask,
  MaintenanceReport,
  PruneTask,
  ScanTask,
  StatsTask,
  VerifyTask,
} from "../../../shared/src/gen/cairn/v1/common.js";
import type { JobRecord, MaintenanceKind } from "../store/records.js";

export const MAINTENANCE_KINDS: readonly MaintenanceKind[] = ["verify", "prune", "gc", "stats", "scan"];

type WireTask = NonNullable<RunMaintenanceRequest["task"]>;
type TaskOf<K extends MaintenanceKind> = Extract<WireTask, { $case: K }>["value"];

/** How each kind's task message is stored in a job record (proto JSON) and read back. */
const CODECS: { [K in MaintenanceKind]: { toJSON(t: TaskOf<K>): unknown; fromJSON(j: unknown): TaskOf<K> } } =
  {
    verify: VerifyTask,
    prune: PruneTask,
    gc: GcTask,
    stats: StatsTask,
    scan: ScanTask,
  };

export function isMaintenanceKind(kind: string): kind is MaintenanceKind {
  return (MAINTENANCE_KINDS as readonly string[]).includes(kind);
}

/** A task as stored in JobRecord.task: the message in proto JSON, and for scans the location. */
export interface StoredTask {
  message: unknown;
  /** Set for a scan of a repository being registered: it has no record to take the location from. */
  location?: string;
}

export function storeTask<K extends MaintenanceKind>(
  kind: K,
  task: TaskOf<K>,
  location?: string,
): StoredTask {
  return { message: CODECS[kind].toJSON(task), ...(location ? { location } : {}) };
}

/** The wire task of a maintenance job record. */
export function wireTask(job: Pick<JobRecord, "id" | "kind" | "task">): WireTask {
  if (!isMaintenanceKind(job.kind))
    throw new CairnError("internal", `job ${job.id} is a ${job.kind} job, not maintenance`);
  const stored = (job.task ?? {}) as StoredTask;
  const codec = CODECS[job.kind] as { fromJSON(j: unknown): TaskOf<MaintenanceKind> };
  return { $case: job.kind, value: codec.fromJSON(stored.message ?? {}) } as WireTask;
}

/** The location a scan job was given, if any. */
export function scanLocation(job: Pick<JobRecord, "task">): string | undefined {
  return ((job.task ?? {}) as StoredTask).location;
}

/** A finished job's report, from its record. */
export function reportOf(job: Pick<JobRecord, "report">): MaintenanceReport | undefined {
  return job.report === undefined || job.report === null ? undefined : MaintenanceReport.fromJSON(job.report);
}

export function storeReport(report: MaintenanceReport): unknown {
  return MaintenanceReport.toJSON(report);
}
