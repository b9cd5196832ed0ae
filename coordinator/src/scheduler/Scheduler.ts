import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { JobRunner } from "../jobs/JobRunner.js";
import { newJob } from "../jobs/newJob.js";
import { chooseMaintenanceHost } from "../maintenance/chooseMaintenanceHost.js";
import { holdBackForExclusive } from "../maintenance/holdBackForExclusive.js";
import { exclusivityKey } from "../maintenance/newMaintenanceJob.js";
import type { Policy } from "../policy/Policy.js";
import { selectVms } from "../policy/selectVms.js";
import { chooseJobMode } from "../schedule/chooseJobMode.js";
import { dueRun } from "../schedule/dueRun.js";
import { inWindow } from "../schedule/inWindow.js";
import { type AssignReader, planDispatchWithReaders } from "../schedule/planDispatch.js";
import type {
  HostRecord,
  JobRecord,
  PolicyRecord,
  ReachRecord,
  RepositoryRecord,
  TransferDecisionRecord,
  VmRecord,
} from "../store/records.js";
import type { Store } from "../store/Store.js";
import { chooseTransferPath, type TransferHost } from "../transfer/chooseTransferPath.js";
import type { PolicyCache } from "./PolicyCache.js";

export interface SchedulerConfig {
  lostAfterMs: number;
  maxAttempts: number;
}

export interface TickReport {
  lostHosts: string[];
  created: number;
  reattached: number;
  dispatched: number;
  queued: number;
  durationMs: number;
}

/**
 * One scheduling pass: mark silent hosts lost (interrupting their jobs), turn due policy fires into
 * jobs (a fire missed while the coordinator was down runs once) and due maintenance into jobs,
 * re-attach interrupted jobs whose host is back, give maintenance jobs an agent, and start queued
 * jobs within the concurrency limits. Passes never overlap.
 */
export class Scheduler {
  private ticking: Promise<TickReport> | undefined;

  constructor(
    private readonly deps: {
      store: Store;
      runner: JobRunner;
      policies: PolicyCache;
      /** Creates the maintenance jobs whose policy schedules are due (verify, GC). */
      fireMaintenance: (policies: readonly PolicyRecord[], now: number) => Promise<JobRecord[]>;
      /** The jobs a host's heartbeat later than `afterMs` said it runs (RunningOnAgents.since). */
      runningOn: (hostId: string, afterMs: number) => ReadonlySet<string> | undefined;
      log: Logger;
      now: () => number;
      config: SchedulerConfig;
    },
  ) {}

  tick(signal: AbortSignal): Promise<TickReport> {
    if (!this.ticking) this.ticking = this.pass(signal).finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async pass(signal: AbortSignal): Promise<TickReport> {
    const { store, runner, log, config } = this.deps;
    const started = performance.now();
    const now = this.deps.now();
    const report: TickReport = {
      lostHosts: [],
      created: 0,
      reattached: 0,
      dispatched: 0,
      queued: 0,
      durationMs: 0,
    };

    const hosts = new Map((await store.listHosts()).map((h) => [h.id, h]));
    let open = await store.listJobs({ states: ["queued", "running", "interrupted"] });

    for (const h of hosts.values()) {
      if (h.status === "online" && now - h.lastSeenMs > config.lostAfterMs) {
        await store.setHostStatus(h.id, "lost");
        h.status = "lost";
        report.lostHosts.push(h.id);
        log.warn({ host: h.id, lastSeenMs: h.lastSeenMs }, "agent missed its heartbeats: host lost");
        await runner.interruptHost(
          h.id,
          `host ${h.id} lost (no heartbeat for ${Math.round((now - h.lastSeenMs) / 1000)} s)`,
          open,
        );
      }
    }
    if (report.lostHosts.length)
      open = await store.listJobs({ states: ["queued", "running", "interrupted"] });

    // Read once for the pass: backup fires, maintenance fires and the windows all use them.
    const records = await store.listPolicies();
    // The new jobs join the open list as inserted: re-reading 10,000 jobs from the store cost more
    // than the rest of a firing pass.
    const created = await this.firePolicies(records, open, now);
    report.created = created.length;
    if (created.length) open = [...open, ...created];

    const isOnline = (id: string) => {
      const h = hosts.get(id);
      return h !== undefined && h.status === "online" && now - h.lastSeenMs <= config.lostAfterMs;
    };
    for (const j of open) {
      if (j.state !== "interrupted" || runner.isRunning(j.id) || !isOnline(j.hostId) || signal.aborted)
        continue;
      // Only once the agent has said what it runs since the job was interrupted: a restarted agent
      // heartbeats after its startup cleanup, and a dead one does not make us re-dispatch in a loop.
      const onAgent = this.deps.runningOn(j.hostId, j.updatedMs);
      if (!onAgent) continue;
      await runner.resume(j, (hosts.get(j.hostId) as HostRecord).agentAddress, onAgent.has(j.id));
      report.reattached++;
    }

    const policies = new Map<string, ReturnType<PolicyCache["get"]>>();
    for (const rec of records) policies.set(rec.name, this.deps.policies.get(rec));
    const eligible = (j: JobRecord) => {
      if (j.trigger === "manual" || !j.policy) return true;
      const p = policies.get(j.policy);
      return p ? inWindow(p.window, p.schedule.timezone, new Date(now)) : true;
    };
    const onlineHosts = new Set([...hosts.keys()].filter(isOnline));
    // A drained host takes no new job (running ones finish, or were aborted by the drain).
    const takingJobs = new Set([...onlineHosts].filter((id) => !hosts.get(id)?.drain));
    const { queued: assigned, why } = await this.assignMaintenanceHosts(
      open.filter((j) => j.state === "queued"),
      takingJobs,
    );
    const queued = await this.followVms(assigned, why);
    const active = open.filter((j) => j.state !== "queued");
    // Read only when a backup may be assigned a path: most passes have nothing queued.
    const pathsNeeded = queued.some((j) => j.kind === "backup");
    const reach = pathsNeeded ? await store.listReach() : [];
    const repos = new Map((pathsNeeded ? await store.listRepositories() : []).map((r) => [r.name, r]));
    const decided = new Map<string, TransferDecisionRecord>();
    const blocked = new Map<string, { fail: boolean; reason: string }>();
    const assign = this.assigner({
      byId: new Map(queued.map((j) => [j.id, j])),
      hosts,
      onlineHosts,
      policies,
      reach,
      repos,
      decided,
      blocked,
    });
    const pick = planDispatchWithReaders({
      queued: holdBackForExclusive(queued.filter(eligible), active).map((j) => ({
        id: j.id,
        vmUuid: exclusivityKey(j),
        hostId: j.hostId,
        repository: j.repository,
        policy: j.policy ?? "",
        priority: j.priority,
        createdAtMs: j.createdMs,
        notBeforeMs: j.notBeforeMs,
        limits: j.limits,
      })),
      active: active.map((j) => ({
        id: j.id,
        vmUuid: exclusivityKey(j),
        hostId: j.hostId,
        repository: j.repository,
        policy: j.policy ?? "",
        readerHostId: j.transfer?.path === "network" ? j.transfer.readerHostId : undefined,
      })),
      onlineHosts: takingJobs,
      nowMs: now,
      assign,
    });
    const byId = new Map(queued.map((j) => [j.id, j]));
    // No path: the job fails before anything on its host is touched; no path yet: it says why.
    for (const [id, b] of blocked) {
      const j = byId.get(id);
      if (!j || signal.aborted) continue;
      // A job cancelled meanwhile keeps its end: the guarded write refuses, and that is all.
      await (b.fail
        ? runner.transition(j, "failed", b.reason, { finishedMs: now, phase: "" })
        : runner.note(j, b.reason)
      ).catch((err) => log.warn({ err, job: id }, "recording a job's transfer path verdict failed"));
    }
    for (const { id } of pick) {
      if (signal.aborted) break;
      const j = byId.get(id);
      if (!j) continue;
      await runner.dispatch(
        j,
        (hosts.get(j.hostId) as HostRecord).agentAddress,
        why.get(id),
        decided.get(id),
      );
      report.dispatched++;
    }
    report.queued = queued.length - report.dispatched;

    report.durationMs = performance.now() - started;
    if (
      report.created ||
      report.dispatched ||
      report.reattached ||
      report.lostHosts.length ||
      report.durationMs > 100
    )
      log.info({ ...report, durationMs: Math.round(report.durationMs * 10) / 10 }, "scheduling pass");
    return report;
  }

  /**
   * Chooses each backup job's transfer path as planDispatch reaches it (docs/transfer-paths.md §3),
   * with every host's load so far; maintenance jobs need none. Decisions, waits and failures are
   * collected for the pass to apply.
   */
  private assigner(p: {
    byId: ReadonlyMap<string, JobRecord>;
    hosts: ReadonlyMap<string, HostRecord>;
    onlineHosts: ReadonlySet<string>;
    policies: ReadonlyMap<string, ReturnType<PolicyCache["get"]>>;
    reach: readonly ReachRecord[];
    repos: ReadonlyMap<string, RepositoryRecord>;
    decided: Map<string, TransferDecisionRecord>;
    blocked: Map<string, { fail: boolean; reason: string }>;
  }): AssignReader {
    return (q, perHost) => {
      const j = p.byId.get(q.id);
      if (j?.kind !== "backup") return {};
      const repo = p.repos.get(j.repository);
      if (!repo) {
        p.blocked.set(j.id, { fail: true, reason: `repository ${j.repository} is no longer registered` });
        return undefined;
      }
      const policy = j.policy ? p.policies.get(j.policy) : undefined;
      const hosts: TransferHost[] = [...p.hosts.values()].map((h) => ({
        id: h.id,
        roles: hostRoles(h),
        online: p.onlineHosts.has(h.id),
        drained: Boolean(h.drain),
        applianceOf: typeof h.inventory.applianceOf === "string" ? h.inventory.applianceOf : "",
        running: perHost.get(h.id) ?? 0,
      }));
      const choice = chooseTransferPath({
        vmHostId: j.hostId,
        repository: repo,
        mode: policy?.transfer ?? "auto",
        movers: policy?.movers ?? { names: [], globs: [] },
        perHostLimit: j.limits.perHost,
        hosts,
        reach: p.reach,
        avoidReader: j.failedReader,
      });
      if (choice.kind === "assign") {
        p.decided.set(j.id, choice.decision);
        return { readerHostId: choice.decision.readerHostId };
      }
      p.blocked.set(j.id, { fail: choice.kind === "fail", reason: choice.reason });
      return undefined;
    };
  }

  /**
   * A backup job goes where its VM is now (docs/checkpoint-ledger.md §5): a queued or retrying job
   * of a VM that migrated since it was created is sent to the new host.
   */
  private async followVms(queued: JobRecord[], why: Map<string, string>): Promise<JobRecord[]> {
    const backups = queued.filter((j) => j.kind === "backup");
    if (!backups.length) return queued;
    const owners = await this.deps.store.vmHosts(backups.map((j) => j.vmUuid));
    return queued.map((j) => {
      const owner = j.kind === "backup" ? owners.get(j.vmUuid) : undefined;
      if (!owner || owner === j.hostId) return j;
      why.set(j.id, `${j.vmName} runs on ${owner} now${j.hostId ? `, not ${j.hostId}` : ""}`);
      return { ...j, hostId: owner };
    });
  }

  /**
   * Maintenance jobs that wait for an agent get one (chooseMaintenanceHost), with why it was chosen
   * (for the dispatch's reason); those no online host can take keep waiting. Looks at recent
   * successes only when such a job is queued.
   */
  private async assignMaintenanceHosts(
    queued: readonly JobRecord[],
    online: ReadonlySet<string>,
  ): Promise<{ queued: JobRecord[]; why: Map<string, string> }> {
    const why = new Map<string, string>();
    if (!queued.some((j) => j.kind !== "backup" && !j.hostId)) return { queued: [...queued], why };
    const recent = await this.deps.store.listJobs({ states: ["succeeded"], limit: 500 });
    const out: JobRecord[] = [];
    for (const j of queued) {
      if (j.kind === "backup" || j.hostId) {
        out.push(j);
        continue;
      }
      const pick = chooseMaintenanceHost({ requested: "", online, recent, repository: j.repository });
      if (!pick) continue;
      out.push({ ...j, hostId: pick.hostId });
      why.set(j.id, pick.reason);
    }
    return { queued: out, why };
  }

  /**
   * Turns each policy's due fires into jobs (backups, then verify and GC), one policy at a time. A
   * policy that cannot run (its stored document no longer validates, or anything throws while it
   * fires) is marked with why (`cairn policies list`), and the others still fire in this pass.
   */
  private async firePolicies(
    records: readonly PolicyRecord[],
    open: readonly JobRecord[],
    now: number,
  ): Promise<JobRecord[]> {
    const { store, log } = this.deps;
    const busy = new Set(open.filter((j) => j.kind === "backup").map((j) => j.vmUuid));
    // Read once, when the first policy is due: most passes fire nothing.
    let vms: Promise<VmRecord[]> | undefined;
    const fleet = () => {
      vms ??= store.listVms().then((all) => all.filter((v) => v.present));
      return vms;
    };
    const created: JobRecord[] = [];
    for (const rec of records) {
      try {
        const policy = this.deps.policies.require(rec);
        if (!policy.disabled) {
          created.push(...(await this.fireBackups(rec, policy, fleet, busy, now)));
          created.push(...(await this.deps.fireMaintenance([rec], now)));
        }
        if (rec.lastError) await store.setPolicyError(rec.name, null);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        // Said once per new error, not on every pass while it lasts.
        if (rec.lastError?.message === message) continue;
        log.error({ err, policy: rec.name }, "policy could not run in this scheduling pass; the others did");
        await store
          .setPolicyError(rec.name, { message, atMs: now })
          .catch((e) => log.warn({ err: e, policy: rec.name }, "recording a policy's error failed"));
      }
    }
    return created;
  }

  /** Creates the backup jobs of the policy's fire, if one is due; returns them as stored. */
  private async fireBackups(
    rec: PolicyRecord,
    policy: Policy,
    fleet: () => Promise<VmRecord[]>,
    busy: Set<string>,
    now: number,
  ): Promise<JobRecord[]> {
    const { store, log, config } = this.deps;
    const fire = dueRun(
      policy.schedule,
      rec.lastFireMs === null ? undefined : new Date(rec.lastFireMs),
      new Date(rec.createdMs),
      new Date(now),
    );
    if (!fire) return [];
    const history = await store.chainHistories(policy.name);
    const jobs: JobRecord[] = [];
    let skippedBusy = 0;
    for (const vm of selectVms(policy, await fleet())) {
      if (busy.has(vm.uuid)) {
        skippedBusy++;
        continue;
      }
      const mode = chooseJobMode(policy.mode, history.get(vm.uuid) ?? { fullCount: 0, runsSinceFull: 0 });
      jobs.push(
        newJob(vm, policy, mode, "schedule", {
          nowMs: now,
          maxAttempts: config.maxAttempts,
          reason: `policy ${policy.name} fired at ${fire.toISOString()}`,
        }),
      );
    }
    await store.insertJobs(jobs);
    await store.setPolicyLastFire(rec.name, fire.getTime());
    // Only once stored: a policy that failed before this keeps its VMs free for the others.
    for (const j of jobs) busy.add(j.vmUuid);
    log.info(
      { policy: policy.name, fire: fire.toISOString(), jobs: jobs.length, skippedBusy },
      "policy fired",
    );
    return jobs;
  }
}

/** A host's roles from its inventory; agents older than transfer paths are hypervisors. */
export function hostRoles(h: HostRecord): string[] {
  const roles = h.inventory.roles;
  return Array.isArray(roles) && roles.length
    ? roles.filter((r): r is string => typeof r === "string")
    : ["hypervisor"];
}
