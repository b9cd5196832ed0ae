import type { ChainHistory } from "../jobs/chainHistory.js";
import type {
  AuditRecord,
  HostDrain,
  HostRecord,
  JobFilter,
  JobRecord,
  LedgerBatchWrite,
  LedgerChange,
  LedgerEntry,
  LedgerState,
  PolicyError,
  PolicyMaintenanceState,
  PolicyRecord,
  ReachRecord,
  RepositoryRecord,
  SnapshotFilter,
  SnapshotRecord,
  TokenRecord,
  VmEventRecord,
  VmRecord,
  VmUpdate,
} from "./records.js";

/**
 * The coordinator's persistent state (port). Contract, checked by test/support/storeContract.ts:
 * - Every method is atomic: after it resolves the change is durable and visible to every later call,
 *   including after a crash of the coordinator (kill -9).
 * - Reads return copies; mutating a returned record changes nothing until it is written back.
 * - `get*` returns undefined for unknown keys; writes of unknown keys where an existing record is
 *   required throw CairnError("not-found").
 * - `consumeEnrollmentToken` succeeds at most once per token, even under concurrent callers.
 * - A VM is owned by the host where it runs, whatever order reports arrive in (decideVmClaim).
 *   `applyInventory` and `applyVmUpdates` move a VM to the reporting host only when that host
 *   reports it running (not older than the owner's last change) and the owner does not (or is not
 *   online), when the VM has no owner yet, or when it is no longer present on its owner; a stale
 *   inactive definition on another host never takes it. A host reporting running a VM its online
 *   owner still runs leaves a claim: audited once (VmClaimConflict), granted when the owner reports
 *   it stopped or gone or is set to a status other than online, dropped when the claimant stops
 *   running it. Every move between hosts is audited (VmMoved, naming both). A host's report that a
 *   VM is gone (not present) applies only to the VM's owner. `applyInventory` marks VMs of that
 *   host that it no longer reports as not present.
 * - Ledger writes come in batches, each atomic and guarded on its own: a write whose `from` is not
 *   the entry's stored state (null: the entry must not exist) fails its batch with
 *   CairnError("failed-precondition") and nothing of that batch is written; the other batches of
 *   the call are. All are durable when the call resolves (one commit: group commit of concurrent
 *   reconciliations). Every write appends a LedgerChange.
 * Adapters: SqliteStore (embedded default).
 */
export interface Store {
  putHost(host: HostRecord): Promise<void>;
  getHost(id: string): Promise<HostRecord | undefined>;
  listHosts(): Promise<HostRecord[]>;
  /** Records a heartbeat: online, lastSeenMs = nowMs. Returns false for an unknown host. */
  touchHost(id: string, nowMs: number): Promise<boolean>;
  setHostStatus(id: string, status: HostRecord["status"]): Promise<void>;
  /** Drains (or, with null, undrains) a host; throws not-found for an unknown host. */
  setHostDrain(id: string, drain: HostDrain | null): Promise<void>;

  applyInventory(
    hostId: string,
    vms: readonly Omit<VmRecord, "hostId" | "lastBackupMs">[],
    nowMs: number,
  ): Promise<void>;
  /**
   * Applies domain events in one transaction: state changes, migrations (host moves, by the
   * ownership rule above) and the events themselves (VmUpdate.event, recorded even when the update
   * does not change the VM). Returns how many VMs changed.
   */
  applyVmUpdates(updates: readonly VmUpdate[], nowMs: number): Promise<number>;
  /** A VM's recorded lifecycle events, newest first. */
  listVmEvents(vmUuid: string, limit: number): Promise<VmEventRecord[]>;
  getVm(uuidOrName: string): Promise<VmRecord | undefined>;
  /** The owning host of each of these VMs (unknown ones are left out): where their jobs go. */
  vmHosts(uuids: readonly string[]): Promise<Map<string, string>>;
  listVms(hostId?: string): Promise<VmRecord[]>;
  setVmLastBackup(uuid: string, ms: number): Promise<void>;

  /** Ledger batches in one commit (see the contract above): per batch, undefined or why it failed. */
  writeLedger(batches: readonly LedgerBatchWrite[], nowMs: number): Promise<(Error | undefined)[]>;
  /** Which of these VMs have live ledger entries (pending, committed, suspect): cheap, per event batch. */
  vmsWithLiveChains(uuids: readonly string[]): Promise<Set<string>>;
  /** One VM's ledger, oldest first (creation time, checkpoint, disk). */
  listLedger(vmUuid: string): Promise<LedgerEntry[]>;
  /** Every entry in one of `states`, across VMs (reconciliation after a restart). */
  listLedgerInState(states: readonly LedgerState[]): Promise<LedgerEntry[]>;
  /** One VM's ledger changes, newest first. */
  ledgerChanges(vmUuid: string, limit: number): Promise<LedgerChange[]>;

  putRepository(repo: RepositoryRecord): Promise<boolean>;
  getRepository(name: string): Promise<RepositoryRecord | undefined>;
  listRepositories(): Promise<RepositoryRecord[]>;
  /**
   * Records a host's probe reports: the newest per (host, repository id), a report that opened
   * nothing (no id) per (host, name or location). A report with an id replaces the same host's
   * id-less one of the same name. `hostId` is set on every stored record.
   */
  putReach(hostId: string, reports: readonly ReachRecord[]): Promise<void>;
  /** Stored reports, of one host or all, by host then repository id, name. */
  listReach(hostId?: string): Promise<ReachRecord[]>;

  /** Inserts or replaces; true when created. */
  putPolicy(policy: PolicyRecord): Promise<boolean>;
  getPolicy(name: string): Promise<PolicyRecord | undefined>;
  listPolicies(): Promise<PolicyRecord[]>;
  deletePolicy(name: string): Promise<boolean>;
  setPolicyLastFire(name: string, fireMs: number): Promise<void>;
  setPolicyMaintenance(name: string, state: PolicyMaintenanceState): Promise<void>;
  /** Records why a scheduling pass could not run the policy, or (null) that it ran. */
  setPolicyError(name: string, error: PolicyError | null): Promise<void>;

  insertJob(job: JobRecord): Promise<void>;
  /** Inserts many jobs in one transaction (a policy firing over thousands of VMs). */
  insertJobs(jobs: readonly JobRecord[]): Promise<void>;
  /** Writes a job back. `expectedState` guards against lost updates: throws if the stored state differs. */
  updateJob(job: JobRecord, expectedState: JobRecord["state"], transitionReason?: string): Promise<void>;
  getJob(id: string): Promise<JobRecord | undefined>;
  listJobs(filter?: JobFilter): Promise<JobRecord[]>;
  /** How many jobs are in each of `states` (every one of them present, 0 when none): for metrics. */
  countJobs(states: readonly JobRecord["state"][]): Promise<Record<string, number>>;
  /**
   * Per VM, the chain a policy's succeeded jobs made: fulls (wasFull) and runs since the newest one,
   * in the order jobs reached succeeded. What chainHistory() computes from every succeeded job, kept
   * as they succeed so that scheduling never reads the job history.
   */
  chainHistories(policy: string): Promise<Map<string, ChainHistory>>;
  /** State transitions of one job, oldest first. */
  jobHistory(id: string): Promise<{ atMs: number; from: string; to: string; reason: string }[]>;

  putSnapshot(snap: SnapshotRecord): Promise<void>;
  getSnapshot(id: string): Promise<SnapshotRecord | undefined>;
  listSnapshots(filter?: SnapshotFilter): Promise<SnapshotRecord[]>;
  deleteSnapshots(ids: readonly string[]): Promise<void>;

  putToken(token: TokenRecord): Promise<void>;
  getToken(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  /** Marks an unexpired, unused enrollment token used; returns it, or undefined if that is not possible. */
  consumeEnrollmentToken(hash: string, nowMs: number): Promise<TokenRecord | undefined>;

  appendAudit(entry: AuditRecord): Promise<void>;
  listAudit(limit: number): Promise<AuditRecord[]>;

  close(): Promise<void>;
}
