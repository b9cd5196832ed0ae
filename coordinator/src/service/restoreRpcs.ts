import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { CoordinatorServiceImplementation } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { checkRestoreDisk, checkRestoreVm } from "../restore/checkRestoreRequest.js";
import type { RestoreRequest } from "../restore/restoreTask.js";
import type { SnapshotRecord } from "../store/records.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { principalName, principalOf } from "./principal.js";

type RestoreRpcs = Pick<CoordinatorServiceImplementation, "restoreDisk" | "restoreVm">;

/**
 * Restores through the coordinator (docs/restore.md §1): each request is checked against the
 * catalog, audited as the caller's, and becomes a job an agent runs; the answer is its id.
 */
export function restoreRpcs(c: CoordinatorContext): RestoreRpcs {
  const who = (ctx: CallContext) => principalName(principalOf(ctx));

  async function hostNamed(hostId: string): Promise<void> {
    if (hostId && !(await c.store.getHost(hostId)))
      throw new CairnError("not-found", `host_id: host ${hostId} is not enrolled`, {
        hint: "see `cairn hosts list`",
      });
  }

  async function create(r: RestoreRequest, snapshot: SnapshotRecord, action: string, ctx: CallContext) {
    await hostNamed(r.request.hostId);
    const job = await c.restores.create(r, snapshot, who(ctx));
    await c.audit(who(ctx), action, snapshot.vmName || snapshot.vmUuid, `job ${job.id}: ${job.reason}`);
    return { jobId: job.id };
  }

  const snapshotOf = async (id: string) => (id ? await c.store.getSnapshot(id) : undefined);

  return {
    async restoreDisk(req, ctx) {
      const snapshot = await snapshotOf(req.snapshotId);
      const request = checkRestoreDisk(req, snapshot);
      return create({ kind: "restore-disk", request }, snapshot as SnapshotRecord, "RestoreDisk", ctx);
    },

    async restoreVm(req, ctx) {
      const snapshot = await snapshotOf(req.snapshotId);
      const request = checkRestoreVm(req, snapshot);
      return create({ kind: "restore-vm", request }, snapshot as SnapshotRecord, "RestoreVm", ctx);
    },
  };
}
