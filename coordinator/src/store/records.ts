import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type { QuiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import type { RepositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
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
  /** Set while an operator drains the host: no new backups are dispatched to it. */
  drain?: HostDrain | null;
  /**
   * The fleet certificate (PEM) issued at enrollment: a network export's client certificate is made
   * for its public key when this host reads (docs/transfer-paths.md §5). Absent for hosts enrolled
   * before transfer paths: they cannot be readers until they enroll again.
   */
  certificatePem?: string;
}

/** One host's newest probe of one repository (docs/transfer-paths.md §2), hostId set. */
export type ReachRecord = RepositoryReach;

/** How a backup job's data travels (docs/transfer-paths.md §3), decided at dispatch. */
export interface TransferDecisionRecord {
  path: "lan-free" | "network";
  /** The host that reads the export and writes the repository (the VM host when lan-free). */
  readerHostId: string;
  /** The repository location as the writing host reported reaching it. */
  location: string;
  reason: string;
}

export interface HostDrain {
  reason: string;
  sinceMs: number;
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
  /** Time of the newest state change applied (the event's own time): ownership moves only forward. */
  stateMs?: number;
}

/** One update from an agent for a VM it sees (an event, or a change its inventory poll found). */
export interface VmUpdate {
  uuid: string;
  name: string;
  hostId: string;
  state: string;
  present: boolean;
  /** When the agent saw it (defaults to the time it is applied). */
  atMs?: number;
  /** The lifecycle event itself, recorded against the VM and the host that saw it. */
  event?: { kind: string; detail: string; fromLibvirt: boolean };
}

/** A lifecycle event of a VM as recorded (VmUpdate.event). */
export interface VmEventRecord {
  atMs: number;
  vmUuid: string;
  hostId: string;
  kind: string;
  detail: string;
  fromLibvirt: boolean;
}

/**
 * The checkpoint ledger (docs/checkpoint-ledger.md): per VM, checkpoint and disk, the chain as it
 * really is. State moves follow coordinator/src/ledger/LedgerState.ts.
 */
export type LedgerState = "pending" | "committed" | "suspect" | "broken" | "retired";

export interface LedgerEntry {
  vmUuid: string;
  checkpoint: string;
  target: string;
  /** The checkpoint before this one in libvirt's chain when it was made (null for a chain root). */
  parent: string | null;
  bitmap: string;
  /** `virsh checkpoint-dumpxml` as the agent reported it with the backup result ("" while pending). */
  xml: string;
  /** The host whose libvirt has (or last had) this checkpoint's metadata. */
  hostId: string;
  snapshotId: string | null;
  jobId: string | null;
  repository: string;
  /** How the backup that made the checkpoint read this disk: full, incremental, differential. */
  kind: string;
  state: LedgerState;
  reason: string;
  createdMs: number;
  changedMs: number;
}

export interface LedgerChange {
  atMs: number;
  vmUuid: string;
  checkpoint: string;
  target: string;
  /** "" for an entry's creation. */
  from: LedgerState | "";
  to: LedgerState;
  reason: string;
}

/** One write to the ledger: the entry in its new state, and the state it must have now (null: new). */
export interface LedgerWrite {
  entry: LedgerEntry;
  from: LedgerState | null;
}

/** Writes that stand or fall together, with the reason recorded for those that give none. */
export interface LedgerBatchWrite {
  writes: readonly LedgerWrite[];
  reason: string;
}

export interface RepositoryRecord {
  name: string;
  location: string;
  createdMs: number;
  /** The id in the repository's config, learnt from the first probe that opened `location`. */
  id?: string;
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
  /** Why the latest scheduling pass could not run this policy; absent once it ran or was re-applied. */
  lastError?: PolicyError;
}

export interface PolicyError {
  message: string;
  atMs: number;
}

export interface PolicyMaintenanceState {
  verifyLastFireMs: number | null;
  gcLastFireMs: number | null;
  verifyRuns: number;
}

/** Repository maintenance (format §9) that an agent runs as a job, like a backup. */
export type MaintenanceKind = "verify" | "prune" | "gc" | "stats" | "scan";
/** A restore an agent runs as a job (docs/restore.md §1). */
export type RestoreKind = "restore-disk" | "restore-vm";
export type JobKind = "backup" | MaintenanceKind | RestoreKind;

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
  /**
   * Restore jobs: `task` holds the request as validated (coordinator/src/restore/restoreTask.ts),
   * with the repository location the host reaches; once succeeded, this is what was written
   * (common.proto RestoreOutcome JSON). vmUuid and vmName are the snapshot's VM.
   */
  restore?: unknown;
  /** How many times an agent deferred the job (migration running, VM elsewhere). */
  deferrals?: number;
  /** How many runs of the job were lost with their agent (each used an attempt). */
  interruptions?: number;
  /** Backup jobs: the path of the current (or last) attempt; re-attaching keeps it. */
  transfer?: TransferDecisionRecord | null;
  /** A mover whose read failed the previous attempt: the next assignment prefers another. */
  failedReader?: string;
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
  /** Admin tokens: when and by whom revoked (absent in records written before revocation existed). */
  revokedMs?: number | null;
  revokedBy?: string | null;
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
