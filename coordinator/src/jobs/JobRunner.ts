import { ClientError, Status } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  BackupResult,
  ExportReady,
  RunBackupResponse,
  TransferSpec,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import type { MaintenanceReport, Progress, RestoreOutcome } from "../../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../../shared/src/grpc/wire/backupJobState.js";
import { backupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import { quiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { AgentClients } from "../agents/AgentClients.js";
import { describeChains } from "../ledger/describeChains.js";
import type { Ledger } from "../ledger/Ledger.js";
import { describeReport } from "../maintenance/describeReport.js";
import { scanLocation, storeReport, wireTask } from "../maintenance/maintenanceTask.js";
import { agentRestoreRequest, describeOutcome, isRestoreKind, storeOutcome } from "../restore/restoreTask.js";
import type { JobRecord, TransferDecisionRecord } from "../store/records.js";
import type { Store } from "../store/Store.js";
import { historyOf } from "../transfer/historyOf.js";
import type { JobHub } from "./JobHub.js";
import { assertTransition, type JobState } from "./JobState.js";

/** Status codes after which the same job may succeed later: it is retried with a backoff. */
const RETRYABLE = new Set([
  Status.FAILED_PRECONDITION,
  Status.RESOURCE_EXHAUSTED,
  Status.ABORTED,
  Status.INTERNAL,
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
]);
/**
 * A restore's refusals (name exists, file exists, VM running, no room: docs/restore.md §3) come
 * before anything is written and answer the same on every attempt: the job fails at once.
 */
const RESTORE_RETRYABLE = new Set([...RETRYABLE].filter((s) => s !== Status.FAILED_PRECONDITION));
/** The stream to the agent broke: the agent may still be running the job (or finish it). */
const LOST_SIGHT = new Set([Status.UNAVAILABLE, Status.CANCELLED]);

export interface JobSuccess {
  job: JobRecord;
  snapshotId: string;
  bytesRead: number;
  bytesStored: number;
  freezeMs: number;
  /** The sealed manifest as the agent reported it (empty from agents older than this field). */
  manifestJson: string;
}

interface Following {
  controller: AbortController;
  cancelled: boolean;
  /** Aborted on purpose to run again later (a drained host): queued, not failed. */
  requeue?: string;
  /** Network path: the reader's stream, aborted alone when the reader's host is lost. */
  reader?: { hostId: string; controller: AbortController };
  /** The mover whose read failed this attempt: the retry prefers another. */
  failedReader?: string;
  /** Why the reader failed, set before the VM host is told: its stream's end is then the reader's. */
  readerFailed?: string;
  /** The VM host's half ended first: the reader's call is dropped without finishing anything. */
  hostEnded?: boolean;
}

/** How the reader's half of a network-path job ended. */
type ReaderOutcome = { result: BackupResult } | { failed: string } | { detached: true };

/** The agent did not run the job and nothing changed: it runs again, maybe on another host. */
interface Deferred {
  deferred: string;
}

/** How often a job may be deferred (a VM that never settles on a host) before it fails. */
const MAX_DEFERRALS = 60;

/** How a followed job ended on its agent: its final state, and what to record before saying so. */
interface Finished {
  state: "succeeded" | "failed";
  reason: string;
  patch: Partial<JobRecord>;
  /** Records what the job made; `finished` is the job as it will be stored, in its final state. */
  record(finished: JobRecord): Promise<void>;
}

export interface JobRunnerDeps {
  store: Store;
  hub: JobHub;
  clients: AgentClients;
  log: Logger;
  now: () => number;
  retryDelayMs: (attempt: number) => number;
  /** Called when a backup job succeeded, before it is recorded as such (snapshot index, retention). */
  onSuccess: (s: JobSuccess) => Promise<void>;
  /** Called when a maintenance job ended with a report, before it is recorded (catalog, audit). */
  onMaintenanceDone?: (job: JobRecord, report: MaintenanceReport) => Promise<void>;
  /** Called when a restore job succeeded, before it is recorded (ledger after in place, audit). */
  onRestoreDone?: (job: JobRecord) => Promise<void>;
  onTransition?: (job: JobRecord, from: JobState) => void;
  /** The checkpoint ledger: what backups make and what their ends mean to chains. */
  ledger?: Pick<Ledger, "checkpointPending" | "backupSealed" | "jobEnded">;
}

/**
 * Runs jobs on agents: one RunBackup (or RunMaintenance) stream per running job, progress into the hub, the outcome
 * into the store. The agent keeps a job running when the stream breaks (detach), so a broken
 * stream makes the job `interrupted`, and reconciliation re-attaches by job id: never run twice.
 */
export class JobRunner {
  private readonly running = new Map<string, Following>();

  constructor(private readonly deps: JobRunnerDeps) {}

  isRunning(jobId: string): boolean {
    return this.running.has(jobId);
  }

  runningCount(): number {
    return this.running.size;
  }

  /** Moves a job through a legal transition and records it. */
  async transition(
    job: JobRecord,
    to: JobState,
    reason: string,
    patch: Partial<JobRecord> = {},
  ): Promise<JobRecord> {
    assertTransition(job.id, job.state, to);
    const now = this.deps.now();
    const next: JobRecord = { ...job, ...patch, state: to, reason, updatedMs: now };
    await this.deps.store.updateJob(next, job.state, reason);
    this.deps.log.info({ job: job.id, vm: job.vmName, from: job.state, to, reason }, "job transition");
    this.deps.hub.changed(next);
    this.deps.onTransition?.(next, job.state);
    return next;
  }

  /**
   * Records why a queued job waits (no transfer path yet), without a transition: only when the
   * reason changed, so that waiting passes write nothing.
   */
  async note(job: JobRecord, reason: string): Promise<JobRecord> {
    if (job.reason === reason) return job;
    const next: JobRecord = { ...job, reason, updatedMs: this.deps.now() };
    await this.deps.store.updateJob(next, job.state);
    this.deps.hub.changed(next);
    return next;
  }

  /**
   * Starts (or re-attaches to) a job on its agent; returns once it is `running`. A backup's
   * `transfer` is the path chosen for this attempt; re-attaching keeps the recorded one.
   */
  async dispatch(
    job: JobRecord,
    agentAddress: string,
    why?: string,
    transfer?: TransferDecisionRecord,
  ): Promise<void> {
    const reattach = job.state === "interrupted";
    await this.start(
      job,
      agentAddress,
      reattach
        ? `re-attached on ${job.hostId} (attempt ${job.attempt})`
        : `dispatched to ${job.hostId}${why ? ` (${why})` : ""}${transfer ? `; ${transfer.reason}` : ""}`,
      { transfer: transfer ?? (reattach ? job.transfer : undefined) ?? null },
    );
  }

  /**
   * Takes up an interrupted job once its agent has reported what it runs. Still running there: it
   * is re-attached, the same run and attempt. Not running (the agent died or restarted mid-job):
   * the lost run used an attempt, so a job that crashes its agent does not freeze its guest again
   * and again; it runs again under the same job id (an agent that sealed it answers with the
   * result), or fails once its attempts are spent.
   */
  async resume(job: JobRecord, agentAddress: string, runningOnAgent: boolean): Promise<void> {
    if (runningOnAgent) return this.dispatch(job, agentAddress);
    if (this.running.has(job.id)) return;
    const interruptions = (job.interruptions ?? 0) + 1;
    if (job.attempt >= job.maxAttempts) {
      const reason = `interrupted ${interruptions} times (last: ${job.reason}); not retried after ${job.attempt} attempts`;
      if (job.kind === "backup") await this.deps.ledger?.jobEnded(job, reason);
      await this.transition(job, "failed", reason, {
        finishedMs: this.deps.now(),
        phase: "",
        interruptions,
      });
      return;
    }
    await this.start(
      job,
      agentAddress,
      `run lost on ${job.hostId} (${job.reason}); attempt ${job.attempt + 1} of ${job.maxAttempts}`,
      { attempt: job.attempt + 1, interruptions, transfer: job.transfer ?? null },
    );
  }

  private async start(
    job: JobRecord,
    agentAddress: string,
    reason: string,
    patch: Partial<JobRecord>,
  ): Promise<void> {
    if (this.running.has(job.id)) return;
    const running = await this.transition(job, "running", reason, {
      startedMs: job.startedMs ?? this.deps.now(),
      phase: "starting",
      hostId: job.hostId,
      ...patch,
    });
    const entry: Following = { controller: new AbortController(), cancelled: false };
    this.running.set(job.id, entry);
    void this.follow(running, agentAddress, entry).finally(() => this.running.delete(job.id));
  }

  /** Cancels a job: aborts it on the agent (its cleanup still runs there), then records it. */
  async cancel(job: JobRecord, reason: string): Promise<JobRecord> {
    const entry = this.running.get(job.id);
    if (entry) {
      entry.cancelled = true;
      await this.abortOnAgent(job, entry, reason, 10_000);
      return (await this.deps.store.getJob(job.id)) ?? job;
    }
    return this.transition(job, "cancelled", reason, { finishedMs: this.deps.now() });
  }

  /**
   * Aborts a running job on its agent (its cleanup runs there: thaw, libvirt job ended, unsealed
   * checkpoint removed) and queues it again without using an attempt: a drained host's backups.
   */
  async requeue(job: JobRecord, reason: string): Promise<boolean> {
    const entry = this.running.get(job.id);
    if (!entry) return false;
    entry.requeue = reason;
    await this.abortOnAgent(job, entry, reason, 60_000);
    return true;
  }

  /**
   * Asks the agent to abort a followed job (answered once its cleanup ran, or after `waitMs`), then
   * stops following it; `failed` records the end from the entry's flags. A failed AbortJob is only
   * logged (a cancelled job is also aborted on the agent's next heartbeat).
   */
  private async abortOnAgent(
    job: JobRecord,
    entry: Following,
    reason: string,
    waitMs: number,
  ): Promise<void> {
    // A network-path job runs on two hosts: both halves are aborted (the reader first, so that
    // the VM host's export is not read while it ends).
    const hostIds = [...(job.transfer?.path === "network" ? [job.transfer.readerHostId] : []), job.hostId];
    for (const id of hostIds) {
      const host = await this.deps.store.getHost(id);
      if (host)
        await this.deps.clients
          .get(host)
          .abortJob({ jobId: job.id, reason }, { signal: AbortSignal.timeout(waitMs) })
          .catch((e) =>
            this.deps.log.warn(
              { err: e, job: job.id, host: id },
              entry.cancelled
                ? "AbortJob failed; the agent aborts it on its next heartbeat"
                : "AbortJob failed while requeueing",
            ),
          );
    }
    entry.controller.abort();
  }

  /** The host is gone: its running streams are dropped and their jobs become interrupted. */
  interruptHost(hostId: string, reason: string, jobs: readonly JobRecord[]): Promise<unknown> {
    // Jobs it reads for (network path): their VM host is told to end the export, and they fail
    // and are retried on another path (docs/transfer-paths.md §6).
    for (const e of this.running.values())
      if (e.reader?.hostId === hostId) e.reader.controller.abort(new Error(reason));
    return Promise.all(
      jobs
        .filter((j) => j.hostId === hostId && j.state === "running")
        .map(async (j) => {
          this.running.get(j.id)?.controller.abort();
          await this.transition(j, "interrupted", reason).catch(() => {});
        }),
    );
  }

  /** Stops following every job (coordinator shutdown); jobs stay running on their agents. */
  async detachAll(reason: string): Promise<void> {
    const ids = [...this.running.keys()];
    for (const e of this.running.values()) e.controller.abort();
    for (const id of ids) {
      const j = await this.deps.store.getJob(id);
      if (j?.state === "running") await this.transition(j, "interrupted", reason).catch(() => {});
    }
  }

  private async follow(job: JobRecord, agentAddress: string, entry: Following): Promise<void> {
    const { log } = this.deps;
    try {
      const done =
        job.kind === "backup"
          ? await this.followBackup(job, agentAddress, entry)
          : isRestoreKind(job.kind)
            ? await this.followRestore(job, agentAddress, entry)
            : await this.followMaintenance(job, agentAddress, entry);
      const latest = (await this.deps.store.getJob(job.id)) ?? job;
      if ("deferred" in done) {
        await this.defer(latest, done.deferred);
        return;
      }
      const finished: JobRecord = {
        ...latest,
        ...done.patch,
        state: done.state,
        finishedMs: this.deps.now(),
        phase: "done",
      };
      // Record first, then report the outcome: whoever sees the job end also finds what it made.
      await done
        .record(finished)
        .catch((err) => log.error({ err, job: job.id }, "recording a finished job's outcome failed"));
      await this.transition(latest, done.state, done.reason, {
        ...done.patch,
        finishedMs: finished.finishedMs,
        phase: "done",
      });
    } catch (err) {
      await this.failed(job.id, err, entry).catch((e) =>
        log.error({ err: e, job: job.id }, "recording a job failure failed"),
      );
    }
  }

  /** Back to the queue without using an attempt; the scheduler sends it where the VM is now. */
  private async defer(job: JobRecord, reason: string): Promise<void> {
    const deferrals = (job.deferrals ?? 0) + 1;
    await this.deps.ledger?.jobEnded(job, `deferred: ${reason}`);
    if (deferrals > MAX_DEFERRALS) {
      await this.transition(job, "failed", `deferred ${MAX_DEFERRALS} times, last: ${reason}`, {
        finishedMs: this.deps.now(),
        phase: "",
      });
      return;
    }
    const delayMs = Math.min(30_000, 1000 * 2 ** Math.min(deferrals - 1, 5));
    await this.transition(job, "queued", `deferred by ${job.hostId}: ${reason}; runs where the VM is`, {
      notBeforeMs: this.deps.now() + delayMs,
      phase: "",
      deferrals,
    });
  }

  /**
   * Disks whose chain the ledger ended (restored in place, demoted after a crash or a migration):
   * the agent reads them in full and records this reason, whatever checkpoints the domain has.
   */
  private async ledgerFullReasons(job: JobRecord): Promise<Record<string, string>> {
    const vm = await this.deps.store.getVm(job.vmUuid);
    if (!vm) return {};
    const [entries, changes] = await Promise.all([
      this.deps.store.listLedger(vm.uuid),
      this.deps.store.ledgerChanges(vm.uuid, 50),
    ]);
    return Object.fromEntries(
      describeChains(vm, entries, changes)
        .filter((d) => d.next === "full" && d.lastCheckpoint)
        .map((d) => [d.target, d.reason]),
    );
  }

  private async followBackup(
    job: JobRecord,
    agentAddress: string,
    entry: Following,
  ): Promise<Finished | Deferred> {
    const network = job.transfer?.path === "network" ? job.transfer : undefined;
    const vmHost = this.deps.clients.get({ id: job.hostId, agentAddress });
    const stream = vmHost.runBackup(
      {
        jobId: job.id,
        domainUuid: job.vmUuid,
        mode: backupMode.toWire(job.mode),
        quiesce: quiesceMode.toWire(job.quiesce),
        // Lan-free: the location the VM host reported reaching; network: it opens no repository.
        repository: network ? "" : job.transfer?.location || ((await this.repositoryLocation(job)) ?? ""),
        disks: [],
        bandwidthLimit: BigInt(job.bandwidthBytesPerSecond),
        labels: this.labels(job),
        detachOnDisconnect: true,
        transfer: network ? await this.transferSpec(job, network) : undefined,
        fullReasons: await this.ledgerFullReasons(job),
      },
      { signal: entry.controller.signal },
    );
    let reading: Promise<ReaderOutcome> | undefined;
    try {
      return await this.followVmHost(job, stream, {
        // A re-attached VM host stream repeats export_ready: the reader is re-attached by job id.
        exportReady: (ready) => {
          if (network && !reading) reading = this.readExport(job, network, ready, vmHost, entry);
        },
        reader: () => reading,
      });
    } catch (err) {
      // The VM host's failure after the reader's is the reader's: name the mover (a retry
      // assigns the path again and prefers another one).
      if (entry.readerFailed && !entry.controller.signal.aborted) {
        entry.failedReader = network?.readerHostId;
        throw new CairnError("unavailable", entry.readerFailed, { cause: err });
      }
      // The reader's call is dropped (it detaches; a re-attach finds it by job id).
      entry.hostEnded = true;
      entry.reader?.controller.abort(new Error("the VM host's half ended"));
      throw err;
    }
  }

  private labels(job: JobRecord): Record<string, string> {
    return { ...(job.policy ? { policy: job.policy } : {}), trigger: job.trigger };
  }

  /** What the VM host needs to export for the reader (docs/transfer-paths.md §4). */
  private async transferSpec(job: JobRecord, d: TransferDecisionRecord): Promise<TransferSpec> {
    const reader = await this.deps.store.getHost(d.readerHostId);
    if (!reader?.certificatePem)
      throw new CairnError(
        "failed-precondition",
        `mover ${d.readerHostId} has no certificate on record: it enrolled before transfer paths`,
        { hint: `enroll ${d.readerHostId} again (cairn hosts enroll-token ${d.readerHostId})` },
      );
    const snaps = await this.deps.store.listSnapshots({ vmUuid: job.vmUuid, repository: job.repository });
    const full = await Promise.all(snaps.map((s) => this.deps.store.getSnapshot(s.id)));
    return {
      readerHostId: d.readerHostId,
      readerCertificatePem: reader.certificatePem,
      history: historyOf(full.filter((s) => s !== undefined)),
    };
  }

  /**
   * The reader's half: ReadExport on the mover, its states and progress into the job, then
   * FinishExport on the VM host with the sealed manifest, or without one when the read failed (the
   * VM host then ends the export and removes the checkpoint). Never throws. When the whole job
   * stopped being followed (coordinator stopping, cancel, VM host lost) both agents keep their
   * halves: nothing is finished here.
   */
  private async readExport(
    job: JobRecord,
    d: TransferDecisionRecord,
    ready: ExportReady,
    vmHost: ReturnType<AgentClients["get"]>,
    entry: Following,
  ): Promise<ReaderOutcome> {
    const controller = new AbortController();
    entry.reader = { hostId: d.readerHostId, controller };
    const signal = AbortSignal.any([entry.controller.signal, controller.signal]);
    const finish = (manifestJson: string, reason: string) =>
      vmHost.finishExport(
        { jobId: job.id, manifestJson, reason },
        { signal: AbortSignal.any([entry.controller.signal, AbortSignal.timeout(60_000)]) },
      );
    try {
      const reader = await this.deps.store.getHost(d.readerHostId);
      if (!reader?.agentAddress)
        throw new CairnError("not-found", `host ${d.readerHostId} is not registered`);
      const stream = this.deps.clients.get(reader).readExport(
        {
          jobId: job.id,
          repository: d.location,
          export: ready,
          bandwidthLimit: BigInt(job.bandwidthBytesPerSecond),
          labels: this.labels(job),
          detachOnDisconnect: true,
          sourceHostId: job.hostId,
        },
        { signal },
      );
      let result: BackupResult | undefined;
      for await (const ev of stream) {
        const e = ev.event;
        if (e?.$case === "progress") this.progress(job.id, e.value);
        else if (e?.$case === "jobState")
          this.deps.hub.changed({ ...job, phase: backupJobState.nameOf(e.value) ?? job.phase });
        else if (e?.$case === "result") result = e.value;
      }
      if (!result) throw new CairnError("protocol", "it ended ReadExport without a result");
      await finish(result.manifestJson, "");
      return { result };
    } catch (err) {
      if (entry.controller.signal.aborted || entry.hostEnded) return { detached: true };
      const why = controller.signal.aborted
        ? String((controller.signal.reason as Error)?.message ?? controller.signal.reason)
        : err instanceof ClientError
          ? err.details
          : ((err as Error)?.message ?? String(err));
      const reason = `mover ${d.readerHostId} failed reading the export: ${why}`;
      entry.readerFailed = reason;
      this.deps.log.warn({ job: job.id, reader: d.readerHostId, err }, "network-path read failed");
      await finish("", reason).catch((e) =>
        this.deps.log.warn({ err: e, job: job.id }, "FinishExport without a manifest failed"),
      );
      return { failed: reason };
    }
  }

  /** Follows the VM host's RunBackup stream to its end; `exportReady` starts the reader's half. */
  private async followVmHost(
    job: JobRecord,
    stream: AsyncIterable<RunBackupResponse>,
    half: { exportReady: (ready: ExportReady) => void; reader: () => Promise<ReaderOutcome> | undefined },
  ): Promise<Finished | Deferred> {
    let current = job;
    for await (const ev of stream) {
      const e = ev.event;
      if (!e) continue;
      if (e.$case === "exportReady") {
        half.exportReady(e.value);
        continue;
      }
      if (e.$case === "progress") this.progress(job.id, e.value);
      else if (e.$case === "jobState") {
        // A state a newer agent added is shown as the phase before it, not a failure.
        current = { ...current, phase: backupJobState.nameOf(e.value) ?? current.phase };
        this.deps.hub.changed(current);
      } else if (e.$case === "checkpointPending") {
        await this.deps.ledger?.checkpointPending(current, e.value);
      } else if (e.$case === "deferred") {
        return { deferred: `${e.value.cause}: ${e.value.reason}` };
      } else if (e.$case === "result") {
        // Network path: the VM host's result carries the checkpoint and what it pruned, the
        // reader's the sealed snapshot; each field comes from whichever has it.
        const outcome = await half.reader();
        const r = outcome && "result" in outcome ? merged(e.value, outcome.result) : e.value;
        const kinds = Object.values(r.diskKinds).join(", ");
        return {
          state: "succeeded",
          reason: `snapshot ${r.snapshotId} (${kinds}${r.quiesced ? ", quiesced" : `, crash-consistent: ${r.consistencyReason}`})`,
          patch: { snapshotId: r.snapshotId, diskKinds: r.diskKinds },
          record: async (finished) => {
            await this.deps.ledger
              ?.backupSealed(finished, {
                snapshotId: r.snapshotId,
                ...(r.checkpoint ? { checkpoint: r.checkpoint } : {}),
                diskKinds: r.diskKinds,
                prunedCheckpoints: r.prunedCheckpoints,
              })
              .catch((err) =>
                this.deps.log.error({ err, job: job.id }, "recording a backup in the ledger failed"),
              );
            await this.deps.onSuccess({
              job: finished,
              snapshotId: r.snapshotId,
              bytesRead: Number(r.bytesRead),
              bytesStored: Number(r.bytesStored),
              freezeMs: r.freezeMs,
              manifestJson: r.manifestJson,
            });
          },
        };
      }
    }
    throw new CairnError("protocol", "the agent ended the RunBackup stream without a result");
  }

  private async followMaintenance(job: JobRecord, agentAddress: string, entry: Following): Promise<Finished> {
    const location = scanLocation(job) ?? (await this.repositoryLocation(job));
    if (!location) throw new CairnError("not-found", `repository ${job.repository} is no longer registered`);
    const stream = this.deps.clients
      .get({ id: job.hostId, agentAddress })
      .runMaintenance(
        { jobId: job.id, repository: location, task: wireTask(job), detachOnDisconnect: true },
        { signal: entry.controller.signal },
      );
    for await (const ev of stream) {
      const e = ev.event;
      if (e?.$case === "progress") this.progress(job.id, e.value);
      else if (e?.$case === "report") {
        const report = e.value;
        const outcome = describeReport(report);
        return {
          state: outcome.ok ? "succeeded" : "failed",
          reason: outcome.summary,
          patch: { report: storeReport(report) },
          record: (finished) => this.deps.onMaintenanceDone?.(finished, report) ?? Promise.resolve(),
        };
      }
    }
    throw new CairnError("protocol", "the agent ended the RunMaintenance stream without a report");
  }

  /**
   * A restore on its agent (docs/restore.md §1): the same request on every attempt and re-attach
   * (the agent attaches a running job id, and keeps the job when the call ends: AbortJob stops it).
   */
  private async followRestore(job: JobRecord, agentAddress: string, entry: Following): Promise<Finished> {
    const agent = this.deps.clients.get({ id: job.hostId, agentAddress });
    const call = agentRestoreRequest(job);
    const options = { signal: entry.controller.signal };
    const stream =
      call.kind === "restore-disk"
        ? mapEvents(agent.restoreDisk(call.request, options), (r): RestoreOutcome | undefined =>
            r ? { outcome: { $case: "disk", value: r } } : undefined,
          )
        : mapEvents(agent.restoreVm(call.request, options), (r): RestoreOutcome | undefined =>
            r ? { outcome: { $case: "vm", value: r } } : undefined,
          );
    for await (const ev of stream) {
      if (ev.progress) this.progress(job.id, ev.progress);
      else if (ev.outcome) {
        const outcome = ev.outcome;
        return {
          state: "succeeded",
          reason: describeOutcome(outcome),
          patch: { restore: storeOutcome(outcome) },
          record: (finished) => this.deps.onRestoreDone?.(finished) ?? Promise.resolve(),
        };
      }
    }
    throw new CairnError("protocol", `the agent ended the ${call.kind} stream without a result`);
  }

  private progress(jobId: string, p: Progress): void {
    this.deps.hub.setProgress(jobId, {
      bytesDone: Number(p.bytesDone),
      bytesTotal: Number(p.bytesTotal),
      rate: p.rate,
      etaSeconds: p.etaSeconds,
      phase: p.phase,
    });
  }

  private async failed(jobId: string, err: unknown, entry: Following) {
    const job = await this.deps.store.getJob(jobId);
    if (job?.state !== "running") return; // already moved (host lost, shutdown)
    const now = this.deps.now();
    const ended = (why: string) =>
      job.kind === "backup"
        ? this.deps.ledger
            ?.jobEnded(job, why)
            .catch((e) => this.deps.log.error({ err: e, job: job.id }, "ledger rollback failed"))
        : undefined;
    if (entry.cancelled) {
      await ended("cancelled");
      await this.transition(job, "cancelled", "cancelled by request", { finishedMs: now });
      return;
    }
    if (entry.requeue) {
      await ended(entry.requeue);
      await this.transition(job, "queued", `${entry.requeue}; queued again`, { phase: "", notBeforeMs: now });
      return;
    }
    if (entry.controller.signal.aborted) return;
    const status = err instanceof ClientError ? err.code : undefined;
    const message = err instanceof ClientError ? err.details : ((err as Error)?.message ?? String(err));
    if (status !== undefined && LOST_SIGHT.has(status)) {
      await this.transition(job, "interrupted", `lost the agent mid-job: ${message}`);
      return;
    }
    const retryable =
      status === undefined || (isRestoreKind(job.kind) ? RESTORE_RETRYABLE : RETRYABLE).has(status);
    await ended(message);
    if (retryable && job.attempt < job.maxAttempts) {
      const delay = this.deps.retryDelayMs(job.attempt);
      await this.transition(
        job,
        "queued",
        `attempt ${job.attempt} failed: ${message}; retrying in ${Math.round(delay / 1000)} s`,
        {
          attempt: job.attempt + 1,
          notBeforeMs: now + delay,
          phase: "",
          ...(entry.failedReader ? { failedReader: entry.failedReader } : {}),
        },
      );
      return;
    }
    await this.transition(
      job,
      "failed",
      retryable ? `failed after ${job.attempt} attempts: ${message}` : message,
      { finishedMs: now, phase: "" },
    );
  }

  private async repositoryLocation(job: JobRecord): Promise<string | undefined> {
    return (await this.deps.store.getRepository(job.repository))?.location;
  }
}

/** A restore stream's events, as progress or the outcome its result makes. */
async function* mapEvents<R>(
  stream: AsyncIterable<{
    event?: { $case: "progress"; value: Progress } | { $case: "result"; value: R } | undefined;
  }>,
  outcome: (r: R) => RestoreOutcome | undefined,
): AsyncGenerator<{ progress?: Progress; outcome?: RestoreOutcome }> {
  for await (const ev of stream) {
    const e = ev.event;
    if (e?.$case === "progress") yield { progress: e.value };
    else if (e?.$case === "result") yield { outcome: outcome(e.value) };
  }
}

/** The network path's result: the VM host's fields where it has them, else the reader's. */
function merged(host: BackupResult, reader: BackupResult): BackupResult {
  return {
    snapshotId: host.snapshotId || reader.snapshotId,
    manifestJson: host.manifestJson || reader.manifestJson,
    checkpoint: host.checkpoint ?? reader.checkpoint,
    prunedCheckpoints: host.prunedCheckpoints.length ? host.prunedCheckpoints : reader.prunedCheckpoints,
    diskKinds: Object.keys(host.diskKinds).length ? host.diskKinds : reader.diskKinds,
    quiesced: host.quiesced || reader.quiesced,
    consistencyReason: host.consistencyReason || reader.consistencyReason,
    bytesRead: host.bytesRead || reader.bytesRead,
    bytesNew: host.bytesNew || reader.bytesNew,
    bytesStored: host.bytesStored || reader.bytesStored,
    freezeMs: host.freezeMs || reader.freezeMs,
  };
}
