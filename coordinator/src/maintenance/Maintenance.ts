import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { MaintenanceReport } from "../../../shared/src/gen/cairn/v1/common.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { JobHub } from "../jobs/JobHub.js";
import { isTerminal } from "../jobs/JobState.js";
import type { Policy } from "../policy/Policy.js";
import { dueRun } from "../schedule/dueRun.js";
import type { PolicyCache } from "../scheduler/PolicyCache.js";
import { snapshotRecordOf } from "../snapshots/snapshotRecordOf.js";
import type { JobRecord, MaintenanceKind, PolicyRecord, SnapshotRecord } from "../store/records.js";
import type { Store } from "../store/Store.js";
import { type StoredTask, storeTask, wireTask } from "./maintenanceTask.js";
import { newMaintenanceJob } from "./newMaintenanceJob.js";

export interface MaintenanceDeps {
  store: Store;
  hub: JobHub;
  policies: PolicyCache;
  log: Logger;
  now: () => number;
  maxAttempts: number;
  audit: (principal: string, action: string, target: string, detail: string) => Promise<void>;
  /** Asks for a scheduling pass soon (a job was queued). */
  kick: () => void;
}

/** Share of chunks each scheduled verify reads → how many slices make one full pass. */
export function verifySlices(readDataPercent: number): number {
  if (readDataPercent <= 0) return 0;
  return readDataPercent >= 100 ? 1 : Math.max(1, Math.round(100 / readDataPercent));
}

/**
 * Repository maintenance as jobs: queued here, run by an agent that reaches the repository, and
 * their reports applied to the catalog when they end. The coordinator itself opens no repository.
 */
export class Maintenance {
  /** Serializes read-modify-write of queued prune jobs between concurrent job completions. */
  private pruneChain: Promise<unknown> = Promise.resolve();
  /**
   * Per repository, the scheduled prune job that later VMs join while it is queued. Kept here, not
   * found by listing queued jobs: a policy firing over 10,000 VMs queues 10,000 jobs, and each of
   * their completions would parse them all. After a restart the next VM starts a new one.
   */
  private readonly queuedPrune = new Map<string, string>();

  constructor(private readonly deps: MaintenanceDeps) {}

  /** Queues a maintenance job; the scheduler gives it an agent (unless `hostId` names one). */
  async enqueue(
    kind: MaintenanceKind,
    repository: string,
    task: StoredTask,
    opts: { reason: string; trigger: JobRecord["trigger"]; policy?: string | null; hostId?: string },
  ): Promise<JobRecord> {
    const job = newMaintenanceJob(kind, repository, task, {
      ...opts,
      nowMs: this.deps.now(),
      maxAttempts: this.deps.maxAttempts,
    });
    await this.deps.store.insertJob(job);
    this.deps.hub.changed(job);
    this.deps.kick();
    return job;
  }

  /**
   * Retention after a scheduled backup: the VM's snapshots in that repository are pruned by its
   * policy, in a prune job queued for the repository (one queued prune collects every VM).
   */
  afterBackup(job: JobRecord, policy: Policy): Promise<void> {
    const run = this.pruneChain.then(() => this.queuePrune(job.repository, job.vmUuid, policy));
    this.pruneChain = run.catch(() => {});
    return run;
  }

  private async queuePrune(repository: string, vmUuid: string, policy: Policy): Promise<void> {
    const target = { vmUuid, retention: policy.retention };
    const id = this.queuedPrune.get(repository);
    const queued = id === undefined ? undefined : await this.deps.store.getJob(id);
    if (queued?.state === "queued") {
      const w = wireTask(queued);
      const targets = w.$case === "prune" ? w.value.targets.filter((t) => t.vmUuid !== vmUuid) : [];
      const task = storeTask("prune", { targets: [...targets, target], dryRun: false });
      // The scheduler may have started it since it was read: then this VM gets a prune of its own.
      const joined = await this.deps.store
        .updateJob({ ...queued, task, updatedMs: this.deps.now() }, "queued")
        .then(
          () => true,
          (e) => {
            if (isCairnError(e, "failed-precondition")) return false;
            throw e;
          },
        );
      if (joined) return;
    }
    const job = await this.enqueue(
      "prune",
      repository,
      storeTask("prune", { targets: [target], dryRun: false }),
      {
        reason: `retention of policy ${policy.name} after a scheduled backup`,
        trigger: "schedule",
        policy: policy.name,
      },
    );
    this.queuedPrune.set(repository, job.id);
  }

  /** Creates the verify and GC jobs whose schedules in these policies are due. */
  async fireDue(records: readonly PolicyRecord[], nowMs: number): Promise<JobRecord[]> {
    const created: JobRecord[] = [];
    for (const rec of records) {
      const policy = this.deps.policies.get(rec);
      const m = policy?.maintenance;
      if (!policy || policy.disabled || !m) continue;
      const state = rec.maintenance ?? { verifyLastFireMs: null, gcLastFireMs: null, verifyRuns: 0 };
      const due = (cron: string | undefined, last: number | null) =>
        cron
          ? dueRun(
              { cron, timezone: policy.schedule.timezone },
              last === null ? undefined : new Date(last),
              new Date(rec.createdMs),
              new Date(nowMs),
            )
          : undefined;
      const verifyFire = due(m.verify, state.verifyLastFireMs);
      const gcFire = due(m.gc, state.gcLastFireMs);
      if (!verifyFire && !gcFire) continue;
      const next = { ...state };
      if (verifyFire) {
        const count = verifySlices(m.readData);
        const slice = count ? state.verifyRuns % count : 0;
        const task = storeTask("verify", {
          readData: count > 0,
          readDataSlice: slice,
          readDataSlices: count,
        });
        created.push(
          await this.enqueue("verify", policy.repository, task, {
            reason: `policy ${policy.name} verify fired at ${verifyFire.toISOString()}${
              count > 1 ? ` (reads slice ${slice + 1}/${count} of the chunks)` : ""
            }`,
            trigger: "schedule",
            policy: policy.name,
          }),
        );
        next.verifyLastFireMs = verifyFire.getTime();
        next.verifyRuns = state.verifyRuns + 1;
      }
      if (gcFire) {
        created.push(
          await this.enqueue("gc", policy.repository, storeTask("gc", { dryRun: false, noRepack: false }), {
            reason: `policy ${policy.name} gc fired at ${gcFire.toISOString()}`,
            trigger: "schedule",
            policy: policy.name,
          }),
        );
        next.gcLastFireMs = gcFire.getTime();
      }
      await this.deps.store.setPolicyMaintenance(rec.name, next);
    }
    return created;
  }

  /** A maintenance job ended with a report: the catalog follows the repository, and the audit log says so. */
  async done(job: JobRecord, report: MaintenanceReport): Promise<void> {
    const r = report.report;
    if (r?.$case === "prune" && !r.value.dryRun)
      await this.deps.store.deleteSnapshots(r.value.removedSnapshotIds);
    if (r?.$case === "scan") {
      for (const json of r.value.manifestsJson) {
        let rec: SnapshotRecord;
        try {
          rec = snapshotRecordOf(json, job.repository);
        } catch (err) {
          // One bad manifest does not keep the others out of the catalog.
          this.deps.log.warn({ job: job.id, err }, "scan reported an invalid manifest");
          continue;
        }
        await this.deps.store.putSnapshot(rec);
      }
    }
    await this.deps.audit(
      "coordinator",
      `${capitalize(job.kind)}Done`,
      job.repository,
      `job ${job.id}: ${job.reason}`,
    );
  }

  /** Resolves with the job once it has ended (or throws when `signal` aborts first; the job goes on). */
  async awaitEnd(jobId: string, signal: AbortSignal): Promise<JobRecord> {
    let wake: () => void = () => {};
    const stop = this.deps.hub.watch(jobId, () => wake());
    const onAbort = () => wake();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        if (signal.aborted) throw new CairnError("aborted", `stopped waiting for job ${jobId}; it goes on`);
        const j = await this.deps.store.getJob(jobId);
        if (!j) throw new CairnError("not-found", `job ${jobId} does not exist`);
        if (isTerminal(j.state)) return j;
        await new Promise<void>((resolve) => {
          // A change may land between the read and the wait: a slow poll is the backstop.
          const t = setTimeout(resolve, 2_000);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    } finally {
      stop();
      signal.removeEventListener("abort", onAbort);
    }
  }
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
