import { isAbsolute } from "node:path";
import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RestoreDiskRequest, RestoreDiskResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import type { RestoreDiskResult } from "../../../shared/src/gen/cairn/v1/common.js";
import { restoreDisk } from "../../../shared/src/repository/restore/restoreDisk.js";
import { checkJobId } from "../jobs/checkJobId.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import { checkRestoreIds } from "../restore/checkRestoreIds.js";
import { RestoreProgress } from "../restore/RestoreProgress.js";
import type { RestoreRpcDeps } from "../restore/RestoreRpcDeps.js";

/** The engine's target kinds as RestoreDiskResult.target_kind names them. */
const TARGET_KIND = {
  "new-file": "file",
  "replace-file": "replaced-file",
  "block-device": "block-device",
} as const;

/**
 * RestoreDisk (docs/restore.md §2): one disk of a snapshot to a file or block device on this host,
 * as a job of this agent (AbortJob stops it; a running job id attaches; a recently finished one
 * answers its recorded result). The engine decides what the destination allows (new file, replace
 * with overwrite, block device) and removes a new file when it fails or is aborted.
 */
export async function* restoreDiskRpc(
  deps: RestoreRpcDeps,
  req: RestoreDiskRequest,
  ctx: CallContext,
): AsyncGenerator<RestoreDiskResponse> {
  checkJobId(req.jobId);
  if (!req.repository.trim()) throw new CairnError("invalid-argument", "repository is required");
  checkRestoreIds({ snapshotId: req.snapshotId, diskTarget: req.diskTarget });
  if (!isAbsolute(req.destination) || req.destination.includes("\0"))
    throw new CairnError(
      "invalid-argument",
      `destination ${JSON.stringify(req.destination)} is not an absolute path`,
    );
  const format = req.format || "raw";
  const streams = jobStreamsOf<RestoreDiskResponse>(deps.jobs, "restore-disk");
  if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
  const { feed } = streams.start(
    req.jobId,
    // Two jobs never write one destination at once.
    `restore-disk:${req.destination}`,
    async (signal, f): Promise<RestoreDiskResult> => {
      const progress = new RestoreProgress((p) =>
        f.publish("progress", { jobId: req.jobId, event: { $case: "progress", value: p } }),
      );
      progress.phase("open");
      const repo = await deps.openRepository(req.repository, signal);
      try {
        const reader = await repo.openDisk(req.snapshotId, req.diskTarget, signal);
        progress.setTotal(reader.virtualSize);
        const r = await restoreDisk(reader, req.destination, {
          format,
          force: req.overwrite,
          signal,
          destinationFlag: "destination",
          onProgress: (done) => progress.disk(done),
        });
        return {
          destination: r.path,
          format: r.format,
          targetKind: TARGET_KIND[r.kind],
          bytesWritten: BigInt(r.dataBytes + r.zeroBytesWritten),
          bytesZeroed: BigInt(r.zeroBytesWritten),
        };
      } finally {
        await repo.close();
      }
    },
    (result): RestoreDiskResponse => ({ jobId: req.jobId, event: { $case: "result", value: result } }),
  );
  // Like RunBackup, the caller that started it going away aborts it (a new file is removed, so
  // the job can be sent again); other callers only stop following.
  // Restores always detach: the coordinator re-attaches by job id (docs/restore.md §1); AbortJob stops one.
  yield* streams.follow(feed, req.jobId, { signal: ctx.signal, starter: true, detach: true });
}
