import type { CheckpointRecord, DescribeChainResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { domainState } from "../../../shared/src/grpc/wire/domainState.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { AgentClients } from "../agents/AgentClients.js";
import { isTerminal } from "../jobs/JobState.js";
import type { JobRecord, LedgerWrite } from "../store/records.js";
import type { Store } from "../store/Store.js";
import { bitmapVerdict } from "./bitmapVerdict.js";
import { classifyVmEvent } from "./classifyVmEvent.js";
import { LedgerBatch } from "./LedgerBatch.js";
import { isLive } from "./LedgerState.js";
import { LedgerWriter } from "./LedgerWriter.js";
import { type BackupOutcome, planBackupOutcome } from "./planBackupOutcome.js";
import { planRedefine } from "./planRedefine.js";

export interface LedgerDeps {
  store: Store;
  clients: AgentClients;
  log: Logger;
  now: () => number;
  /** Called after each reconciliation (metrics, benchmarks). */
  onReconciled?: (r: ReconcileReport) => void;
}

/** A lifecycle event as the ledger sees it (after the store applied it). */
export interface ObservedEvent {
  vmUuid: string;
  kind: string;
  detail: string;
  state: string;
  atMs: number;
}

export interface ReconcileReport {
  vmUuid: string;
  hostId: string;
  why: string;
  /** When the event that asked for it happened (0 when none did). */
  sinceMs: number;
  elapsedMs: number;
  redefined: string[];
  kept: number;
  demoted: { checkpoint: string; target: string; reason: string }[];
  rolledBack: string[];
  forgotten: { hostId: string; removed: string[]; refused: string }[];
  /** Set when nothing could be checked (host offline, domain not running there, RPC failed). */
  skipped?: string;
  /** The hosts the chain left, with the checkpoints whose metadata they may still keep. */
  stale?: { hostId: string; names: string[] }[];
}

/** Enough to keep every agent and the store busy; more only queues inside gRPC and the heap. */
const MAX_CONCURRENT_RECONCILES = 64;

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 19);

/**
 * The checkpoint ledger (docs/checkpoint-ledger.md): records what backups made, follows lifecycle
 * events, and reconciles a VM's chain with the libvirt of the host where it runs. `write` is the
 * one door for every change; reconciliations of one VM never overlap.
 */
export class Ledger {
  private readonly reconciling = new Map<string, Promise<ReconcileReport>>();
  private readonly again = new Map<string, { hostId: string; why: string; sinceMs: number }>();

  private readonly writer: LedgerWriter;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly deps: LedgerDeps) {
    this.writer = new LedgerWriter(deps.store, deps.now);
  }

  /** The one door: a guarded batch (legal moves were checked when it was planned). */
  async write(writes: readonly LedgerWrite[], reason: string): Promise<void> {
    if (!writes.length) return;
    await this.writer.write({ writes, reason });
    // Debug: every change is in the ledger's own change log (cairn vms chain --json).
    this.deps.log.debug(
      {
        vm: writes[0]?.entry.vmUuid,
        changes: writes.map(
          (w) => `${w.entry.checkpoint}/${w.entry.target}:${w.from ?? ""}>${w.entry.state}`,
        ),
        reason,
      },
      "ledger changed",
    );
  }

  /** The agent is about to make a checkpoint for `job`: pending until the job ends. */
  async checkpointPending(job: JobRecord, cp: CheckpointRecord): Promise<void> {
    const now = this.deps.now();
    const batch = new LedgerBatch(now);
    const existing = new Set(
      (await this.deps.store.listLedger(job.vmUuid)).map((e) => `${e.checkpoint}/${e.target}`),
    );
    for (const [target, bitmap] of Object.entries(cp.bitmaps)) {
      if (existing.has(`${cp.name}/${target}`)) continue; // a re-attached job reports it again
      batch.move(
        {
          vmUuid: job.vmUuid,
          checkpoint: cp.name,
          target,
          parent: cp.parent || null,
          bitmap,
          xml: "",
          hostId: job.hostId,
          snapshotId: null,
          jobId: job.id,
          repository: job.repository,
          kind: "",
          state: "pending",
          reason: "",
          createdMs: now,
          changedMs: now,
        },
        null,
        "pending",
        `job ${job.id} is making it on ${job.hostId}`,
      );
    }
    await this.write(batch.writes(), `checkpoint ${cp.name} of job ${job.id}`);
  }

  /** A backup sealed: its checkpoint is committed, pruned ones retired, demoted disks broken. */
  async backupSealed(
    job: JobRecord,
    outcome: Omit<BackupOutcome, "vmUuid" | "jobId" | "hostId" | "repository">,
  ) {
    const entries = await this.deps.store.listLedger(job.vmUuid);
    const writes = planBackupOutcome(
      entries,
      { ...outcome, vmUuid: job.vmUuid, jobId: job.id, hostId: job.hostId, repository: job.repository },
      this.deps.now(),
    );
    await this.write(writes, `job ${job.id} sealed ${outcome.snapshotId}`);
  }

  /** A job ended without sealing (failed, cancelled, retried, deferred): its pending entries roll back. */
  async jobEnded(job: JobRecord, why: string): Promise<void> {
    const entries = (await this.deps.store.listLedger(job.vmUuid)).filter(
      (e) => e.state === "pending" && e.jobId === job.id,
    );
    const batch = new LedgerBatch(this.deps.now());
    for (const e of entries)
      batch.move(e, e.state, "retired", `rolled back: job ${job.id} ended without sealing (${why})`);
    await this.write(batch.writes(), `job ${job.id} ended`);
  }

  /**
   * The VM's disks were overwritten with an older restore point (docs/restore.md §3): no checkpoint
   * describes them any more, so every live chain is broken and the next backup reads them in full,
   * for this reason. Pending entries are left to their job (an in-place restore never runs beside a
   * backup of its VM: they share the VM's exclusivity key).
   */
  async restoredInPlace(vmUuid: string, snapshotId: string, jobId: string): Promise<void> {
    const batch = new LedgerBatch(this.deps.now());
    const reason = `restored in place from ${snapshotId} (job ${jobId})`;
    for (const e of await this.deps.store.listLedger(vmUuid))
      if (e.state === "committed" || e.state === "suspect") batch.move(e, e.state, "broken", reason);
    await this.write(batch.writes(), `job ${jobId} restored VM ${vmUuid} in place`);
  }

  /** Lifecycle events a host reported (already applied to the inventory). */
  async observe(hostId: string, events: readonly ObservedEvent[]): Promise<void> {
    const meaningful = events
      .map((e) => ({ e, meaning: classifyVmEvent(e) }))
      .filter((x) => x.meaning !== "other");
    if (!meaningful.length) return;
    // One query for the batch: most events are of VMs without a chain worth looking at.
    const withChains = await this.deps.store.vmsWithLiveChains(meaningful.map((x) => x.e.vmUuid));
    for (const { e, meaning } of meaningful) {
      if (!withChains.has(e.vmUuid)) continue;
      const entries = await this.deps.store.listLedger(e.vmUuid);
      if (!entries.some((x) => isLive(x.state))) continue;
      if (meaning === "crash") {
        const batch = new LedgerBatch(this.deps.now());
        const why = `QEMU stopped uncleanly on ${hostId} at ${hhmm(e.atMs)} (${e.kind}${e.detail ? `/${e.detail}` : ""}): its bitmaps may be lost`;
        for (const x of entries)
          if (x.state === "committed" && x.hostId === hostId) batch.move(x, x.state, "suspect", why);
        await this.write(batch.writes(), `crash of VM ${e.vmUuid}`);
      } else if (entries.some((x) => isLive(x.state) && x.hostId !== hostId)) {
        void this.reconcileSoon(
          e.vmUuid,
          hostId,
          `${e.kind}${e.detail ? ` (${e.detail})` : ""} on ${hostId}`,
          e.atMs,
        );
      }
    }
  }

  /** Queues a reconciliation; one per VM at a time, the latest request runs after the current one. */
  reconcileSoon(vmUuid: string, hostId: string, why: string, sinceMs = 0): Promise<ReconcileReport> {
    const current = this.reconciling.get(vmUuid);
    if (current) {
      this.again.set(vmUuid, { hostId, why, sinceMs });
      return current;
    }
    const run = this.slot()
      .then((release) =>
        this.reconcile(vmUuid, hostId, why, sinceMs, AbortSignal.timeout(120_000)).finally(release),
      )
      .catch((err): ReconcileReport => {
        this.deps.log.error({ err, vm: vmUuid, host: hostId }, "ledger reconciliation failed");
        return emptyReport(vmUuid, hostId, why, sinceMs, `failed: ${(err as Error).message}`);
      })
      .then(async (report) => {
        this.deps.onReconciled?.(report);
        await this.forgetStale(report, AbortSignal.timeout(60_000));
        const { stale: _, ...logged } = report;
        this.deps.log.info({ ...logged, elapsedMs: Math.round(report.elapsedMs) }, "ledger reconciled");
        return report;
      })
      .finally(() => {
        this.reconciling.delete(vmUuid);
        const next = this.again.get(vmUuid);
        if (next) {
          this.again.delete(vmUuid);
          void this.reconcileSoon(vmUuid, next.hostId, next.why, next.sinceMs);
        }
      });
    this.reconciling.set(vmUuid, run);
    return run;
  }

  /**
   * A place among the reconciliations that run at once: a migration storm (a host evacuated, a
   * fleet bench) must queue here, not open thousands of RPCs and hold their state all at once.
   */
  private async slot(): Promise<() => void> {
    if (this.active >= MAX_CONCURRENT_RECONCILES) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    return () => {
      this.active--;
      this.waiting.shift()?.();
    };
  }

  /** Resolves when no reconciliation is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.reconciling.size) await Promise.allSettled([...this.reconciling.values()]);
  }

  /**
   * Brings one VM's ledger and the libvirt of the host where it runs into agreement
   * (docs/checkpoint-ledger.md §4).
   */
  async reconcile(
    vmUuid: string,
    hostId: string,
    why: string,
    sinceMs: number,
    signal: AbortSignal,
  ): Promise<ReconcileReport> {
    const started = performance.now();
    const { store, clients } = this.deps;
    const report = emptyReport(vmUuid, hostId, why, sinceMs);
    const host = await store.getHost(hostId);
    if (!host?.agentAddress || host.status !== "online")
      return { ...report, skipped: `host ${hostId} is not online` };
    const agent = clients.get(host);
    const described: DescribeChainResponse = await agent.describeChain({ domainUuid: vmUuid }, { signal });
    let entries = await store.listLedger(vmUuid);

    // Pending entries whose job is over: the agent rolled back what its unsealed job made.
    const batch = new LedgerBatch(this.deps.now());
    for (const e of entries.filter((x) => x.state === "pending")) {
      const job = e.jobId ? await store.getJob(e.jobId) : undefined;
      if (job && !isTerminal(job.state) && job.state !== "queued") continue;
      batch.move(e, e.state, "retired", `rolled back: job ${e.jobId} ended without sealing it`);
      report.rolledBack.push(`${e.checkpoint}/${e.target}`);
    }
    await this.write(batch.writes(), `reconciliation on ${hostId}: pending entries`);
    if (batch.writes().length) entries = await store.listLedger(vmUuid);

    const runsHere = described.found && isRunning(described.state);
    if (!runsHere) {
      report.elapsedMs = performance.now() - started;
      return {
        ...report,
        skipped: described.found ? "the domain does not run there" : "no such domain there",
      };
    }
    const oldHosts = new Set(
      entries.filter((e) => isLive(e.state) && e.hostId !== hostId).map((e) => e.hostId),
    );
    const plan = planRedefine(entries, new Set(described.checkpoints.map((c) => c.name)));
    const verdicts = new Map<string, { kept: boolean; reason: string }>();
    const key = (cp: string, t: string) => `${cp}\u0000${t}`;
    if (plan.redefine.length) {
      const r = await agent.redefineCheckpoints(
        {
          domainUuid: vmUuid,
          checkpoints: plan.redefine.map((c) => ({ ...c, createdMs: BigInt(c.createdMs) })),
        },
        { signal },
      );
      report.redefined = r.redefined;
      for (const v of r.verdicts)
        verdicts.set(key(v.checkpoint, v.target), { kept: v.kept, reason: v.reason });
    }
    for (const e of plan.present) {
      const bad = bitmapVerdict(e, described.bitmaps);
      verdicts.set(key(e.checkpoint, e.target), { kept: !bad, reason: bad ?? "" });
    }
    const moves = new LedgerBatch(this.deps.now());
    const judged = [
      ...plan.present,
      ...plan.redefine.flatMap((c) => entries.filter((x) => x.checkpoint === c.name && isLive(x.state))),
    ].sort((x, y) => x.createdMs - y.createdMs);
    // Per disk, the oldest checkpoint that did not survive is the cause: a later one of the same
    // disk that was not kept either says so (its own message is often "parent not found"). A later
    // one the agent kept stays kept: the agent judges each checkpoint on its own disks.
    const firstLoss = new Map<string, { checkpoint: string; reason: string }>();
    for (const e of judged) {
      const given = verdicts.get(key(e.checkpoint, e.target)) ?? {
        kept: false,
        reason: `the agent gave no verdict for ${e.checkpoint}/${e.target}`,
      };
      const cause = firstLoss.get(e.target);
      const v =
        given.kept || !cause
          ? given
          : { kept: false, reason: `its chain broke at ${cause.checkpoint}: ${cause.reason}` };
      if (!v.kept && !cause) firstLoss.set(e.target, { checkpoint: e.checkpoint, reason: given.reason });
      if (v.kept) {
        report.kept++;
        if (e.hostId !== hostId || e.state === "suspect")
          moves.move(
            e,
            e.state,
            "committed",
            e.hostId !== hostId
              ? `carried from ${e.hostId} to ${hostId} (${why}); bitmap verified in QEMU`
              : `bitmap verified in QEMU on ${hostId} (${why})`,
            { hostId },
          );
      } else {
        moves.move(e, e.state, "broken", `${v.reason} (${why})`, { hostId });
        report.demoted.push({ checkpoint: e.checkpoint, target: e.target, reason: v.reason });
      }
    }
    for (const e of plan.unrecoverable) {
      const reason = `no checkpoint XML was recorded for ${e.checkpoint}: it cannot be redefined on ${hostId}`;
      moves.move(e, e.state, "broken", reason);
      report.demoted.push({ checkpoint: e.checkpoint, target: e.target, reason });
    }
    await this.write(moves.writes(), `reconciliation on ${hostId}: ${why}`);
    report.elapsedMs = performance.now() - started;

    report.stale = [...oldHosts].map((old) => ({
      hostId: old,
      names: [...new Set(entries.filter((e) => e.hostId === old).map((e) => e.checkpoint))],
    }));
    return report;
  }

  /**
   * Removes the stale metadata on the hosts a chain left (metadata only; refused where the VM runs).
   * Outside the reconciliation's slot: the ledger already agrees with the host where the VM runs.
   */
  private async forgetStale(report: ReconcileReport, signal: AbortSignal): Promise<void> {
    for (const { hostId, names } of report.stale ?? []) {
      const h = await this.deps.store.getHost(hostId);
      if (!h?.agentAddress || h.status !== "online") continue;
      try {
        const r = await this.deps.clients
          .get(h)
          .forgetCheckpoints({ domainUuid: report.vmUuid, names }, { signal });
        report.forgotten.push({ hostId, removed: r.removed, refused: r.refused });
      } catch (err) {
        this.deps.log.warn(
          { err, vm: report.vmUuid, host: hostId },
          "could not remove stale checkpoint metadata",
        );
      }
    }
  }

  /** VMs whose chain needs a look on `hostId` (after its agent registered): pending or elsewhere-held entries. */
  async reconcileHost(hostId: string, vmsOnHost: readonly string[]): Promise<void> {
    const open = new Set((await this.deps.store.listLedgerInState(["pending"])).map((e) => e.vmUuid));
    for (const uuid of vmsOnHost) {
      const entries = open.has(uuid) ? undefined : await this.deps.store.listLedger(uuid);
      if (open.has(uuid) || entries?.some((e) => isLive(e.state) && e.hostId !== hostId))
        void this.reconcileSoon(uuid, hostId, `agent on ${hostId} registered`);
    }
  }
}

function isRunning(state: DescribeChainResponse["state"]): boolean {
  // Not paused: a domain paused by an incoming migration has not got its bitmaps yet (its resume
  // asks again).
  return domainState.fromWire(state) === "running";
}

function emptyReport(
  vmUuid: string,
  hostId: string,
  why: string,
  sinceMs: number,
  skipped?: string,
): ReconcileReport {
  return {
    vmUuid,
    hostId,
    why,
    sinceMs,
    elapsedMs: 0,
    redefined: [],
    kept: 0,
    demoted: [],
    rolledBack: [],
    forgotten: [],
    ...(skipped ? { skipped } : {}),
  };
}
