import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { CoordinatorServiceImplementation } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { domainState } from "../../../shared/src/grpc/wire/domainState.js";
import { describeChains } from "../ledger/describeChains.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { principalName, principalOf } from "./principal.js";

type LedgerRpcs = Pick<CoordinatorServiceImplementation, "showVmChain" | "drainHost" | "undrainHost">;

/** The checkpoint ledger as operators see it, and host draining (docs/checkpoint-ledger.md). */
export function ledgerRpcs(c: CoordinatorContext): LedgerRpcs {
  const who = (ctx: CallContext) => principalName(principalOf(ctx));

  async function hostOf(id: string) {
    if (!id) throw new CairnError("invalid-argument", "host_id is required");
    const h = await c.store.getHost(id);
    if (!h)
      throw new CairnError("not-found", `host ${id} is not registered`, { hint: "see `cairn hosts list`" });
    return h;
  }

  return {
    async showVmChain(req) {
      if (!req.vm) throw new CairnError("invalid-argument", "vm is required (a VM name or uuid)");
      const vm = await c.store.getVm(req.vm);
      if (!vm)
        throw new CairnError("not-found", `no VM ${req.vm} in the inventory`, {
          hint: "see `cairn vms list`",
        });
      const [entries, changes, events] = await Promise.all([
        c.store.listLedger(vm.uuid),
        c.store.ledgerChanges(vm.uuid, 50),
        c.store.listVmEvents(vm.uuid, Math.min(req.events || 20, 500)),
      ]);
      return {
        vm: {
          uuid: vm.uuid,
          name: vm.name,
          hostId: vm.hostId,
          state: domainState.toWire(vm.state),
          lastBackupMs: BigInt(vm.lastBackupMs),
          labels: vm.labels,
        },
        disks: describeChains(vm, entries, changes).map((d) => ({
          ...d,
          sinceMs: BigInt(d.sinceMs),
        })),
        entries: entries.map((e) => ({
          checkpoint: e.checkpoint,
          parent: e.parent ?? "",
          target: e.target,
          bitmap: e.bitmap,
          state: e.state,
          reason: e.reason,
          hostId: e.hostId,
          snapshotId: e.snapshotId ?? "",
          jobId: e.jobId ?? "",
          kind: e.kind,
          createdMs: BigInt(e.createdMs),
          changedMs: BigInt(e.changedMs),
        })),
        events: events.map((e) => ({
          atMs: BigInt(e.atMs),
          hostId: e.hostId,
          kind: e.kind,
          detail: e.detail,
        })),
        changes: changes.map((x) => ({
          atMs: BigInt(x.atMs),
          checkpoint: x.checkpoint,
          target: x.target,
          from: x.from,
          to: x.to,
          reason: x.reason,
        })),
      };
    },

    async drainHost(req, ctx) {
      const h = await hostOf(req.hostId);
      const reason = req.reason || `drained by ${who(ctx)}`;
      if (!h.drain) await c.store.setHostDrain(h.id, { reason, sinceMs: c.now() });
      const running = (await c.store.listJobs({ states: ["running", "interrupted"] })).filter(
        (j) => j.hostId === h.id && j.kind === "backup",
      );
      const aborted: string[] = [];
      if (req.abortRunning)
        for (const j of running)
          if (await c.runner.requeue(j, `aborted: host ${h.id} is being drained (${reason})`))
            aborted.push(j.id);
      await c.audit(
        who(ctx),
        "DrainHost",
        h.id,
        `${reason}${req.abortRunning ? `; aborted ${aborted.length} running backup(s)` : ""}`,
      );
      c.kick();
      return {
        runningJobIds: running.map((j) => j.id).filter((id) => !aborted.includes(id)),
        abortedJobIds: aborted,
      };
    },

    async undrainHost(req, ctx) {
      const h = await hostOf(req.hostId);
      await c.store.setHostDrain(h.id, null);
      await c.audit(
        who(ctx),
        "UndrainHost",
        h.id,
        h.drain ? `drained since ${new Date(h.drain.sinceMs).toISOString()}` : "was not drained",
      );
      c.kick();
      return {};
    },
  };
}
