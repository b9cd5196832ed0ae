import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { BackupMode as WireBackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import type { CoordinatorServiceImplementation } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { AsyncQueue } from "../../../shared/src/grpc/AsyncQueue.js";
import { backupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import { domainState } from "../../../shared/src/grpc/wire/domainState.js";
import { isTerminal, JOB_STATES, type JobState } from "../jobs/JobState.js";
import { newJob } from "../jobs/newJob.js";
import { exclusivityKey } from "../maintenance/newMaintenanceJob.js";
import type { Policy } from "../policy/Policy.js";
import { parsePolicyYaml } from "../policy/parsePolicyYaml.js";
import { selectVms } from "../policy/selectVms.js";
import { chooseJobMode } from "../schedule/chooseJobMode.js";
import { hostRoles } from "../scheduler/Scheduler.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { jobSummary } from "./jobSummary.js";
import { principalName, principalOf } from "./principal.js";

type AdminRpcs = Pick<
  CoordinatorServiceImplementation,
  | "listHosts"
  | "listVms"
  | "applyPolicy"
  | "listPolicies"
  | "deletePolicy"
  | "backupNow"
  | "listJobs"
  | "watchJob"
  | "cancelJob"
>;

// A `full` policy makes copies (full backups that keep no checkpoint).
const modeEnum = (p: Policy): WireBackupMode =>
  backupMode.toWire(p.mode.kind === "full" ? "copy" : p.mode.kind);

/** Fleet, policy and job administration. Every change is written to the audit log. */
export function adminRpcs(c: CoordinatorContext): AdminRpcs {
  const who = (ctx: CallContext) => principalName(principalOf(ctx));

  async function policyFor(vmUuid: string, vmName: string, name: string): Promise<Policy> {
    if (name) {
      const rec = await c.store.getPolicy(name);
      if (!rec)
        throw new CairnError("not-found", `policy ${name} does not exist`, {
          hint: "see `cairn policies list`",
        });
      try {
        return c.policies.require(rec);
      } catch (e) {
        // Stored before a check existed or the limits changed: say why rather than "does not exist".
        throw new CairnError("failed-precondition", (e as Error).message, {
          cause: e,
          hint: `fix it and apply it again: cairn policies apply -f ${name}.yaml`,
        });
      }
    }
    const vm = await c.store.getVm(vmUuid);
    const matching: Policy[] = [];
    for (const rec of await c.store.listPolicies()) {
      const p = c.policies.get(rec);
      if (p && vm && selectVms(p, [vm]).length) matching.push(p);
    }
    if (matching.length === 1) return matching[0] as Policy;
    throw new CairnError(
      "invalid-argument",
      matching.length
        ? `VM ${vmName} is selected by ${matching.length} policies (${matching.map((p) => p.name).join(", ")}): policy is required`
        : `no policy selects VM ${vmName}: policy is required`,
      { hint: "pass --policy <name> (it gives the repository, quiesce and retention)" },
    );
  }

  return {
    async listHosts() {
      const vms = await c.store.listVms();
      const count = new Map<string, number>();
      for (const v of vms) if (v.present) count.set(v.hostId, (count.get(v.hostId) ?? 0) + 1);
      return {
        hosts: (await c.store.listHosts()).map((h) => ({
          hostId: h.id,
          hostname: h.hostname,
          status: h.agentAddress ? h.status : "enrolled",
          lastSeenMs: BigInt(h.lastSeenMs),
          vmCount: count.get(h.id) ?? 0,
          drained: Boolean(h.drain),
          drainReason: h.drain?.reason ?? "",
          roles: hostRoles(h),
          applianceOf: typeof h.inventory.applianceOf === "string" ? h.inventory.applianceOf : "",
        })),
      };
    },

    async listVms(req) {
      return {
        vms: (await c.store.listVms(req.hostId || undefined))
          .filter((v) => v.present)
          .map((v) => ({
            uuid: v.uuid,
            name: v.name,
            hostId: v.hostId,
            state: domainState.toWire(v.state),
            lastBackupMs: BigInt(v.lastBackupMs),
            labels: v.labels,
          })),
      };
    },

    async applyPolicy(req, ctx) {
      if (!req.yaml.trim())
        throw new CairnError("invalid-argument", "yaml is required (the policy document)");
      const p = parsePolicyYaml(req.yaml, "policy document", c.config.policies);
      if (!(await c.store.getRepository(p.repository)))
        throw new CairnError("invalid-argument", `repository: ${p.repository} is not registered`, {
          hint: "register it first: cairn repository add <name> <location>",
        });
      const now = c.now();
      const old = await c.store.getPolicy(p.name);
      const created = await c.store.putPolicy({
        name: p.name,
        yaml: req.yaml,
        createdMs: old?.createdMs ?? now,
        updatedMs: Math.max(now, (old?.updatedMs ?? 0) + 1),
        // A changed schedule starts counting now: no burst of "missed" runs.
        lastFireMs: old?.lastFireMs ?? null,
        ...(old?.maintenance ? { maintenance: old.maintenance } : {}),
      });
      await c.audit(who(ctx), created ? "CreatePolicy" : "UpdatePolicy", p.name, req.yaml);
      c.kick();
      return { name: p.name, created };
    },

    async listPolicies() {
      const out = [];
      for (const rec of await c.store.listPolicies()) {
        let p: Policy | undefined;
        // A stored document that no longer validates says why even before a pass has marked it.
        let invalid = "";
        try {
          p = c.policies.require(rec);
        } catch (e) {
          invalid = (e as Error).message;
        }
        out.push({
          name: rec.name,
          schedule: p ? `${p.schedule.cron} (${p.schedule.timezone})` : "(invalid)",
          mode: p ? modeEnum(p) : WireBackupMode.BACKUP_MODE_UNSPECIFIED,
          repository: p?.repository ?? "",
          yaml: rec.yaml,
          lastError: rec.lastError?.message ?? invalid,
          lastErrorMs: BigInt(rec.lastError?.atMs ?? 0),
        });
      }
      return { policies: out };
    },

    async deletePolicy(req, ctx) {
      if (!req.name) throw new CairnError("invalid-argument", "name is required");
      if (!(await c.store.deletePolicy(req.name)))
        throw new CairnError("not-found", `policy ${req.name} does not exist`);
      await c.audit(who(ctx), "DeletePolicy", req.name);
      return {};
    },

    async backupNow(req, ctx) {
      if (!req.vm) throw new CairnError("invalid-argument", "vm is required (name or uuid)");
      const vm = await c.store.getVm(req.vm);
      if (!vm?.present)
        throw new CairnError("not-found", `VM ${req.vm} is not known to any registered host`, {
          hint: "see `cairn vms list`; a VM appears once its host's agent has registered",
        });
      const requested =
        req.mode === WireBackupMode.BACKUP_MODE_UNSPECIFIED
          ? undefined
          : backupMode.fromWire(req.mode, "mode");
      const policy = await policyFor(vm.uuid, vm.name, req.policy);
      // A restore of the VM's snapshot elsewhere does not hold the VM; one in place does.
      const active = (
        await c.store.listJobs({ states: ["queued", "running", "interrupted"], vmUuid: vm.uuid })
      ).filter((j) => exclusivityKey(j) === vm.uuid);
      if (active.length)
        throw new CairnError(
          "already-exists",
          `VM ${vm.name} already has job ${active[0]?.id} (${active[0]?.state})`,
          {
            hint: "one job per VM at a time: watch it with `cairn jobs watch`, or cancel it",
          },
        );
      const history = await c.store.chainHistories(policy.name);
      const mode =
        requested ?? chooseJobMode(policy.mode, history.get(vm.uuid) ?? { fullCount: 0, runsSinceFull: 0 });
      const job = newJob(vm, policy, mode, "manual", {
        nowMs: c.now(),
        maxAttempts: c.config.maxAttempts,
        reason: `backup now by ${who(ctx)}`,
      });
      await c.store.insertJob(job);
      await c.audit(who(ctx), "BackupNow", vm.name, `job ${job.id} mode ${mode} policy ${policy.name}`);
      c.hub.changed(job);
      c.kick();
      return { jobId: job.id };
    },

    async listJobs(req) {
      let states: JobState[] | undefined;
      if (req.state) {
        if (req.state === "active") states = ["queued", "running", "interrupted"];
        else if ((JOB_STATES as readonly string[]).includes(req.state)) states = [req.state as JobState];
        else
          throw new CairnError(
            "invalid-argument",
            `state ${JSON.stringify(req.state)} is not one of active, ${JOB_STATES.join(", ")}`,
          );
      }
      let vmUuid: string | undefined;
      if (req.vm) {
        const vm = await c.store.getVm(req.vm);
        if (!vm) throw new CairnError("not-found", `VM ${req.vm} is not known`);
        vmUuid = vm.uuid;
      }
      const jobs = await c.store.listJobs({
        ...(states ? { states } : {}),
        ...(vmUuid ? { vmUuid } : {}),
        limit: req.limit || 100,
      });
      return { jobs: jobs.map((j) => jobSummary(j, c.hub.getProgress(j.id))) };
    },

    async *watchJob(req, ctx) {
      if (!req.jobId) throw new CairnError("invalid-argument", "job_id is required");
      const first = await c.store.getJob(req.jobId);
      if (!first) throw new CairnError("not-found", `job ${req.jobId} does not exist`);
      const q = new AsyncQueue<void>();
      const stop = c.hub.watch(req.jobId, () => q.push());
      const onAbort = () => q.end();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        let job = first;
        yield { job: jobSummary(job, c.hub.getProgress(job.id)) };
        if (isTerminal(job.state)) return;
        // Also poll: a job can move in another coordinator process (or before we subscribed).
        const timer = setInterval(() => q.push(), 1000);
        try {
          for await (const _ of q) {
            job = (await c.store.getJob(req.jobId)) ?? job;
            yield { job: jobSummary(job, c.hub.getProgress(job.id)) };
            if (isTerminal(job.state)) return;
          }
        } finally {
          clearInterval(timer);
        }
      } finally {
        stop();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },

    async cancelJob(req, ctx) {
      if (!req.jobId) throw new CairnError("invalid-argument", "job_id is required");
      const job = await c.store.getJob(req.jobId);
      if (!job) throw new CairnError("not-found", `job ${req.jobId} does not exist`);
      if (isTerminal(job.state))
        throw new CairnError("failed-precondition", `job ${job.id} already ${job.state}; nothing to cancel`);
      await c.runner.cancel(job, `cancelled by ${who(ctx)}`);
      await c.audit(who(ctx), "CancelJob", job.id, job.vmName);
      return {};
    },
  };
}
