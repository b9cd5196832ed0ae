import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { JobHub } from "../jobs/JobHub.js";
import type { JobRunner } from "../jobs/JobRunner.js";
import { newJobRecord } from "../jobs/newJob.js";
import type { Ledger } from "../ledger/Ledger.js";
import { hostRoles } from "../scheduler/Scheduler.js";
import type { JobRecord, SnapshotRecord } from "../store/records.js";
import type { Store } from "../store/Store.js";
import { chooseRestoreHost } from "./chooseRestoreHost.js";
import { isInPlace, type RestoreRequest, storeRestoreTask } from "./restoreTask.js";

/**
 * What a restore may occupy: two per host like a policy's default (restores compete with backups
 * for the host's disks and network), and no repository or fleet-wide bound of their own, so that
 * a restore never waits behind a policy's backup wave elsewhere.
 */
const RESTORE_LIMITS = { perHost: 2, perRepository: 10_000, global: 100_000 };
/** Above a policy's default (50): a restore is someone waiting for their data. */
const RESTORE_PRIORITY = 100;

export interface RestoresDeps {
  store: Store;
  hub: JobHub;
  runner: Pick<JobRunner, "transition">;
  ledger: Pick<Ledger, "restoredInPlace">;
  log: Logger;
  now: () => number;
  maxAttempts: number;
  audit: (principal: string, action: string, target: string, detail: string) => Promise<void>;
  kick: () => void;
}

/**
 * Restores as jobs (docs/restore.md §1): created here with the host and repository location chosen
 * (chooseRestoreHost), run by that host's agent through JobRunner, and what they wrote applied when
 * they succeed (an in-place restore breaks the VM's chains in the ledger).
 */
export class Restores {
  constructor(private readonly deps: RestoresDeps) {}

  /**
   * Queues a validated restore of `snapshot`. A host that cannot run it (offline, drained, does not
   * reach the repository) fails the job at once, with the reason: the job is still created, so the
   * operator's request and its refusal are on record like any job's end.
   */
  async create(r: RestoreRequest, snapshot: SnapshotRecord, requestedBy: string): Promise<JobRecord> {
    const { store } = this.deps;
    const repo = await store.getRepository(snapshot.repository);
    const vm = await store.getVm(snapshot.vmUuid);
    const lastBackup = (
      await store.listJobs({ states: ["succeeded"], vmUuid: snapshot.vmUuid, limit: 50 })
    ).find((j) => j.kind === "backup");
    const inPlace = r.kind === "restore-vm" && r.request.inPlace;
    const choice = repo
      ? chooseRestoreHost({
          requested: r.request.hostId,
          kind: r.kind,
          inPlace,
          vm: vm ? { name: vm.name, hostId: vm.hostId, present: vm.present } : undefined,
          lastBackupHost: lastBackup?.hostId,
          repository: repo,
          hosts: (await store.listHosts()).map((h) => ({
            id: h.id,
            online: h.status === "online" && Boolean(h.agentAddress),
            drained: Boolean(h.drain),
            roles: hostRoles(h),
          })),
          reach: await store.listReach(),
        })
      : ({
          kind: "fail",
          hostId: r.request.hostId,
          reason: `repository ${snapshot.repository} is no longer registered`,
        } as const);
    const what =
      r.kind === "restore-disk"
        ? `restore of ${r.request.diskTarget} of ${snapshot.id} to ${r.request.destination}`
        : `restore of VM ${snapshot.vmName} from ${snapshot.id}${inPlace ? " in place" : ""}`;
    const made = newJobRecord(
      {
        kind: r.kind,
        vmUuid: snapshot.vmUuid,
        vmName: snapshot.vmName,
        hostId: choice.hostId,
        policy: null,
        repository: snapshot.repository,
        // Backup fields: unused by restores.
        mode: "auto",
        quiesce: "off",
        trigger: "manual",
        priority: RESTORE_PRIORITY,
        limits: { ...RESTORE_LIMITS },
        bandwidthBytesPerSecond: 0,
        task: storeRestoreTask(r, choice.kind === "assign" ? choice.location : ""),
      },
      {
        nowMs: this.deps.now(),
        maxAttempts: this.deps.maxAttempts,
        reason: `${what} by ${requestedBy}${choice.kind === "assign" ? `; on ${choice.reason}` : ""}`,
      },
    );
    // A restore job's snapshot is the one it restores from (JobSummary.snapshot_id).
    const job: JobRecord = { ...made, snapshotId: snapshot.id };
    await store.insertJob(job);
    this.deps.hub.changed(job);
    if (choice.kind === "fail")
      return this.deps.runner.transition(job, "failed", `cannot restore: ${choice.reason}`, {
        finishedMs: this.deps.now(),
      });
    this.deps.kick();
    return job;
  }

  /** A restore job succeeded: an in-place one breaks the VM's chains (the next backup is full). */
  async done(job: JobRecord): Promise<void> {
    if (isInPlace(job)) await this.deps.ledger.restoredInPlace(job.vmUuid, job.snapshotId ?? "", job.id);
    await this.deps.audit(
      "coordinator",
      "RestoreDone",
      job.vmName || job.vmUuid,
      `job ${job.id}: ${job.reason}`,
    );
  }
}
