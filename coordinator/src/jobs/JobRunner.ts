import { ClientError, Status } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { MaintenanceReport, Progress } from "../../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../../shared/src/grpc/wire/backupJobState.js";
import { backupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import { quiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { AgentClients } from "../agents/AgentClients.js";
import type { Ledger } from "../ledger/Ledger.js";
import { describeReport } from "../maintenance/describeReport.js";
import { scanLocation, storeReport, wireTask } from "../maintenance/maintenanceTask.js";
import type { JobRecord } from "../store/records.js";
import type { Store } from "../store/Store.js";
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
}

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

  /** Starts (or re-attaches to) a job on its agent; returns once it is `running`. */
  async dispatch(job: JobRecord, agentAddress: string, why?: string): Promise<void> {
    if (this.running.has(job.id)) return;
    const reattach = job.state === "interrupted";
    const running = await this.transition(
      job,
      "running",
      reattach
        ? `re-attached on ${job.hostId} (attempt ${job.attempt})`
        : `dispatched to ${job.hostId}${why ? ` (${why})` : ""}`,
      { startedMs: job.startedMs ?? this.deps.now(), phase: "starting", hostId: job.hostId },
    );
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
    const host = await this.deps.store.getHost(job.hostId);
    if (host)
      await this.deps.clients
        .get(host.agentAddress)
        .abortJob({ jobId: job.id, reason }, { signal: AbortSignal.timeout(waitMs) })
        .catch((e) =>
          this.deps.log.warn(
            { err: e, job: job.id },
            entry.cancelled
              ? "AbortJob failed; the agent aborts it on its next heartbeat"
              : "AbortJob failed while requeueing",
          ),
        );
    entry.controller.abort();
  }

  /** The host is gone: its running streams are dropped and their jobs become interrupted. */
  interruptHost(hostId: string, reason: string, jobs: readonly JobRecord[]): Promise<unknown> {
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

  private async followBackup(
    job: JobRecord,
    agentAddress: string,
    entry: Following,
  ): Promise<Finished | Deferred> {
    const stream = this.deps.clients.get(agentAddress).runBackup(
      {
        jobId: job.id,
        domainUuid: job.vmUuid,
        mode: backupMode.toWire(job.mode),
        quiesce: quiesceMode.toWire(job.quiesce),
        repository: (await this.repositoryLocation(job)) ?? "",
        disks: [],
        bandwidthLimit: BigInt(job.bandwidthBytesPerSecond),
        labels: { ...(job.policy ? { policy: job.policy } : {}), trigger: job.trigger },
        detachOnDisconnect: true,
      },
      { signal: entry.controller.signal },
    );
    let current = job;
    for await (const ev of stream) {
      const e = ev.event;
      if (!e) continue;
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
        const r = e.value;
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
      .get(agentAddress)
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
    const retryable = status === undefined || RETRYABLE.has(status);
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
