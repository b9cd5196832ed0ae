import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  RunMaintenanceRequest,
  RunMaintenanceResponse,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { checkJobId } from "../jobs/checkJobId.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import { runMaintenanceTask } from "../maintenance/runMaintenanceTask.js";

export interface MaintenanceRpcDeps {
  jobs: JobRegistry;
  openRepository(location: string, signal: AbortSignal): Promise<Repository>;
  /** How long prune and GC wait for the repository's exclusive lock (backups hold shared ones). */
  exclusiveLockWaitMs?: number;
}

/**
 * RunMaintenance: runs one repository maintenance task as a job of this agent (abortable through
 * AbortJob, visible to metrics and shutdown like a backup), attaches to it when it already runs,
 * and answers a recently finished job id with its recorded report instead of running it again.
 */
export async function* runMaintenanceRpc(
  deps: MaintenanceRpcDeps,
  req: RunMaintenanceRequest,
  ctx: CallContext,
): AsyncGenerator<RunMaintenanceResponse> {
  checkJobId(req.jobId);
  if (!req.repository.trim()) throw new CairnError("invalid-argument", "repository is required");
  const task = req.task;
  if (!task) throw new CairnError("invalid-argument", "task is required (verify, prune, gc, stats or scan)");
  const streams = jobStreamsOf<RunMaintenanceResponse>(deps.jobs, "maintenance");
  if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
  const { feed } = streams.start(
    req.jobId,
    // Jobs are keyed by what they must not run twice at once; maintenance is guarded by the
    // repository's own locks, so each job is its own key.
    `maintenance:${req.jobId}`,
    async (signal, f) => {
      f.publish("progress", {
        jobId: req.jobId,
        event: {
          $case: "progress",
          value: { bytesDone: 0n, bytesTotal: 0n, rate: 0, etaSeconds: -1, phase: task.$case },
        },
      });
      const repo = await deps.openRepository(req.repository, signal);
      try {
        return await runMaintenanceTask(repo, task, {
          signal,
          exclusiveLockWaitMs: deps.exclusiveLockWaitMs ?? 10 * 60_000,
        });
      } finally {
        await repo.close();
      }
    },
    (report): RunMaintenanceResponse => ({ jobId: req.jobId, event: { $case: "report", value: report } }),
  );
  yield* streams.follow(feed, req.jobId, {
    signal: ctx.signal,
    starter: true,
    detach: req.detachOnDisconnect,
  });
}
