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
}

export interface JobProgress {
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  etaSeconds: number;
  phase: string;
}

export interface JobRecord {
  id: string;
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
}

export interface SnapshotRecord {
  id: string;
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
