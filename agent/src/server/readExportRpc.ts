import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { ReadExportRequest, ReadExportResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { backupJobState } from "../../../shared/src/grpc/wire/backupJobState.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { TokenBucket } from "../../../shared/src/repository/decorators/TokenBucket.js";
import { jobIdOf } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import { exportReadyWire } from "../backup/pipeline/descriptor/exportReadyWire.js";
import { readAndSeal } from "../backup/pipeline/read/readAndSeal.js";
import { checkChainIds } from "../chain/checkChainIds.js";
import { checkJobId } from "../jobs/checkJobId.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import type { RepositoryCache } from "../transfer/RepositoryCache.js";
import type { RouteQuickack } from "../transfer/RouteQuickack.js";
import { backupResultOf, progressToWire } from "./backupEvents.js";

export interface ReadExportRpcDeps {
  jobs: JobRegistry;
  /** Repositories kept open between reads (chunk workers, pack indexes). */
  repositories: RepositoryCache;
  /** This agent's fleet key: with the job's certificate for it, it opens the VM host's export (§5). */
  identityKeyPem: string;
  nbdRequestSize: number;
  nbdDepth: number;
  /** transfer.maxReadBytesPerSecond, shared by every job this agent reads. */
  readLimiter?: TokenBucket | undefined;
  /** Warns when the route to an exporter lacks quickack (§4). */
  quickack?: RouteQuickack | undefined;
  log: Logger;
}

/**
 * ReadExport, the reader's half of the network path (docs/transfer-paths.md §4): reads a VM host's
 * export over NBD with TLS into the repository and seals it. A job id already sealed in the
 * repository answers with that snapshot; one running here is attached to, never run twice.
 */
export async function* readExportRpc(
  deps: ReadExportRpcDeps,
  req: ReadExportRequest,
  ctx: CallContext,
): AsyncGenerator<ReadExportResponse> {
  checkJobId(req.jobId);
  if (!req.repository.trim()) throw new CairnError("invalid-argument", "repository is required");
  if (!req.export) throw new CairnError("invalid-argument", "export is required");
  const descriptor = exportReadyWire.fromWire(req.export, { keyPem: deps.identityKeyPem });
  // It names the VM's folder in the repository.
  checkChainIds({ domainUuid: descriptor.domain.uuid });

  const streams = jobStreamsOf<ReadExportResponse>(deps.jobs, "read", 0);
  // Nothing is recorded here (keepFinished 0): a finished job is found sealed in the repository below.
  if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
  const t0 = performance.now();
  const { repository, release } = await deps.repositories.acquire(req.repository, ctx.signal);
  const opened = performance.now();
  let releaseHere = true;
  try {
    const sealed = (await repository.listVmSnapshots(descriptor.domain.uuid, ctx.signal)).find(
      (s) => jobIdOf(s) === req.jobId,
    );
    deps.log.info(
      { jobId: req.jobId, openMs: opened - t0, historyMs: performance.now() - opened },
      "reading a network export",
    );
    if (sealed) {
      yield {
        jobId: req.jobId,
        event: { $case: "result", value: backupResultOf(sealed, descriptor.freezeWindowMs, undefined, []) },
      };
      return;
    }
    for (const d of descriptor.disks) {
      if (d.endpoint.kind === "tcp") await deps.quickack?.check(d.endpoint.host, ctx.signal);
    }
    const { feed, done } = streams.start(
      req.jobId,
      `read:${descriptor.domain.uuid}`,
      (signal, f) =>
        readAndSeal(repository, descriptor, {
          jobId: req.jobId,
          labels: req.labels,
          requestSize: deps.nbdRequestSize,
          depth: deps.nbdDepth,
          signal,
          log: deps.log,
          maxBytesPerSecond: Number(req.bandwidthLimit),
          agentLimiter: deps.readLimiter,
          onProgress: (p) =>
            f.publish("progress", {
              jobId: req.jobId,
              event: { $case: "progress", value: progressToWire(p) },
            }),
          onStage: (stage) =>
            f.publish("state", {
              jobId: req.jobId,
              event: { $case: "jobState", value: backupJobState.toWire(stage) },
            }),
        }),
      (r) => ({
        jobId: req.jobId,
        event: {
          $case: "result",
          value: backupResultOf(r.manifest, descriptor.freezeWindowMs, undefined, []),
        },
      }),
    );
    // The repository stays open until the job ends, even if every caller has gone.
    releaseHere = false;
    void done.catch(() => {}).finally(release);
    yield* streams.follow(feed, req.jobId, {
      signal: ctx.signal,
      starter: true,
      detach: req.detachOnDisconnect,
    });
  } finally {
    if (releaseHere) release();
  }
}
