import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type { QuiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import type { JobState } from "../jobs/JobState.js";

/** What the coordinator stores. Times are milliseconds since the epoch. */

export type HostStatus = "online" | "lost";

export interface HostRecord {
  id: string;
  hostname: string;
  /** host:port of the agent's AgentService. */
  agentAddress: string;
  status: HostStatus;
  lastSeenMs: number;
  enrolledMs: number;
  inventory: Record<string, unknown>;
}

export interface VmRecord {
  uuid: string;
  name: string;
  /** The host that runs (or last ran) the VM; follows migration. */
  hostId: string;
  /** libvirt state name: "running", "shutoff", ... */
  state: string;
  labels: Record<string, string>;
  disks: { target: string; format: string; virtualSize: number }[];
  /** False once the VM is no longer defined on its host. Snapshots keep referring to it. */
  present: boolean;
  updatedMs: number;
  lastBackupMs: number;
}

export interface RepositoryRecord {
  name: string;
  location: string;
  createdMs: number;
}

export interface PolicyRecord {
  name: string;
  /** The document as applied (YAML). */
  yaml: string;
  createdMs: number;
  updatedMs: number;
  /** Newest schedule fire time already turned into jobs. */
  lastFireMs: number | null;
  /** The same for the policy's maintenance schedules, and how many scheduled verifies ran (slices). */
  maintenance?: PolicyMaintenanceState;
}

export interface PolicyMaintenanceState {
  verifyLastFireMs: number | null;
  gcLastFireMs: number | null;
  verifyRuns: number;
}

/** Repository maintenance (format §9) that an agent runs as a job, like a backup. */
export type MaintenanceKind = "verify" | "prune" | "gc" | "stats" | "scan";
export type JobKind = "backup" | MaintenanceKind;

export interface JobProgress {
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  etaSeconds: number;
  phase: string;
}

export interface JobRecord {
  id: string;
  /** Records written before maintenance jobs existed have none: read as "backup". */
  kind: JobKind;
  vmUuid: string;
  vmName: string;
  hostId: string;
  policy: string | null;
  repository: string;
  mode: BackupMode;
  quiesce: QuiesceMode;
  trigger: "schedule" | "manual";
  state: JobState;
  /** 1 for the first run; incremented by each retry. */
  attempt: number;
  maxAttempts: number;
  reason: string;
  priority: number;
  limits: { perHost: number; perRepository: number; global: number };
  bandwidthBytesPerSecond: number;
  createdMs: number;
  updatedMs: number;
  notBeforeMs: number;
  startedMs: number | null;
  finishedMs: number | null;
  snapshotId: string | null;
  diskKinds: Record<string, string>;
  /** Agent-side state name while running ("reading", "sealing", ...). */
  phase: string;
  /**
   * Maintenance jobs: the task message for `kind` in proto JSON (common.proto VerifyTask, …), the
   * location to scan for a repository being registered, and the report (MaintenanceReport JSON).
   * For these jobs vmUuid and vmName are empty and hostId is chosen when the job is dispatched.
   */
  task?: unknown;
  report?: unknown;
}

export interface SnapshotRecord {
  id: string;
  /** The manifest (format §7) as the agent reported it when it sealed or scanned the snapshot. */
  manifestJson?: string;
  repository: string;
  vmUuid: string;
  vmName: string;
  jobId: string | null;
  policy: string | null;
  createdMs: number;
  logicalBytes: number;
  bytesStored: number;
  kinds: Record<string, string>;
}

export type Role = "admin" | "operator" | "viewer";

export interface TokenRecord {
  hash: string;
  name: string;
  kind: "admin" | "enrollment";
  /** For admin tokens. */
  role: Role | null;
  /** For enrollment tokens: the host id the certificate will carry. */
  hostId: string | null;
  createdMs: number;
  expiresMs: number | null;
  usedMs: number | null;
}

export interface AuditRecord {
  atMs: number;
  principal: string;
  action: string;
  target: string;
  detail: string;
}

export interface JobFilter {
  states?: readonly JobState[];
  vmUuid?: string;
  limit?: number;
}

export interface SnapshotFilter {
  vmUuid?: string;
  repository?: string;
}
