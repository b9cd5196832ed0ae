import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RestoreVmRequest, RestoreVmResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { checkJobId } from "../jobs/checkJobId.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import { checkRestoreIds } from "../restore/checkRestoreIds.js";
import type { RestoreHost } from "../restore/RestoreHost.js";
import { RestoreProgress } from "../restore/RestoreProgress.js";
import type { RestoreRpcDeps } from "../restore/RestoreRpcDeps.js";
import { type RestoreVmConfig, restoreVm } from "../restore/restoreVm.js";

export interface RestoreVmRpcDeps extends RestoreRpcDeps {
  host: RestoreHost;
  config: RestoreVmConfig;
  log: Logger;
}

/**
 * RestoreVm (docs/restore.md §3) as a job of this agent: same job-id semantics as RestoreDisk
 * (checked; a running id attaches; a recently finished one answers its recorded result; AbortJob
 * or the starting caller going away aborts it, and everything it created is taken back).
 */
export async function* restoreVmRpc(
  deps: RestoreVmRpcDeps,
  req: RestoreVmRequest,
  ctx: CallContext,
): AsyncGenerator<RestoreVmResponse> {
  checkJobId(req.jobId);
  if (!req.repository.trim()) throw new CairnError("invalid-argument", "repository is required");
  checkRestoreIds({ snapshotId: req.snapshotId, ...(req.newName ? { domainName: req.newName } : {}) });
  const streams = jobStreamsOf<RestoreVmResponse>(deps.jobs, "restore-vm");
  if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
  const { feed } = streams.start(
    req.jobId,
    // One restore of a snapshot at a time here (a second one under the same name would be refused anyway).
    `restore-vm:${req.snapshotId}`,
    async (signal, f) => {
      const progress = new RestoreProgress((p) =>
        f.publish("progress", { jobId: req.jobId, event: { $case: "progress", value: p } }),
      );
      const repository = await deps.openRepository(req.repository, signal);
      try {
        return await restoreVm(
          { repository, host: deps.host, config: deps.config, log: deps.log, progress, signal },
          req.snapshotId,
          {
            newName: req.newName,
            destinationDir: req.destinationDir,
            format: req.format,
            pool: req.pool,
            inPlace: req.inPlace,
            start: req.start,
          },
        );
      } finally {
        await repository.close();
      }
    },
    (result): RestoreVmResponse => ({ jobId: req.jobId, event: { $case: "result", value: result } }),
  );
  // Restores always detach: the coordinator re-attaches by job id (docs/restore.md §1); AbortJob stops one.
  yield* streams.follow(feed, req.jobId, { signal: ctx.signal, starter: true, detach: true });
}
