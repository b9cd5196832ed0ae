import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { RunBackupRequest, RunBackupResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { QuiesceMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { backupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import { quiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import { jobIdOf } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { BackupConfig, BackupDeps } from "../backup/BackupRequest.js";
import { runBackup } from "../backup/runBackup.js";

export type { JobOutcome };

import { checkChainIds } from "../chain/checkChainIds.js";
import { checkJobId } from "../jobs/checkJobId.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import { backupFeedCallbacks, backupResultEvent } from "./backupEvents.js";
import { backupEndEvent, backupJobEnd, type JobOutcome, reportJobEnd } from "./backupJobEnd.js";
import { exportBackupRpc, type TransferDeps } from "./exportBackupRpc.js";

export interface BackupRpcDeps {
  backup: Omit<BackupDeps, "repository">;
  config: BackupConfig;
  jobs: JobRegistry;
  /** Opens the job's repository; a bandwidth limit (bytes/s, 0 = none) throttles what is written to it. */
  openRepository(
    location: string,
    signal: AbortSignal,
    opts?: { bandwidthBytesPerSecond?: number },
  ): Promise<Repository>;
  /** Told about every job that ends here (metrics). */
  onJobEnd?(outcome: JobOutcome): void;
  /** The network path's VM-host side (docs/transfer-paths.md §4-§5); absent: RunBackup with a transfer is refused. */
  transfer?: TransferDeps | undefined;
}

/**
 * RunBackup: validates the request (INVALID_ARGUMENT names the field), returns the result of a job
 * id that already sealed a snapshot instead of running it twice, otherwise runs the backup and streams
 * its states and progress. A cancelled call aborts the job; its cleanup still runs.
 */
export async function* runBackupRpc(
  deps: BackupRpcDeps,
  req: RunBackupRequest,
  ctx: CallContext,
): AsyncGenerator<RunBackupResponse> {
  checkJobId(req.jobId);
  if (!req.domainUuid.trim()) throw new CairnError("invalid-argument", "domain_uuid is required");
  // It names the VM's folder in the repository and reaches virsh: a strict uuid, nothing else.
  checkChainIds({ domainUuid: req.domainUuid });
  if (req.transfer) {
    // Network path: this host exports for a reader on another host and opens no repository.
    yield* exportBackupRpc(deps, req, req.transfer, ctx);
    return;
  }
  if (!req.repository.trim()) throw new CairnError("invalid-argument", "repository is required");
  const mode = backupMode.fromWire(req.mode, "mode");
  const quiesce =
    req.quiesce === QuiesceMode.QUIESCE_MODE_UNSPECIFIED
      ? "preferred"
      : quiesceMode.fromWire(req.quiesce, "quiesce");

  const repository = await deps.openRepository(req.repository, ctx.signal, {
    bandwidthBytesPerSecond: Number(req.bandwidthLimit),
  });
  let closeRepository = true;
  try {
    // This VM's manifests only, read once: the backup plans from the same list.
    const history = await repository.listVmSnapshots(req.domainUuid, ctx.signal);
    const sealed = history.find((s) => jobIdOf(s) === req.jobId);
    if (sealed) {
      const fw = sealed.extra["freezeWindowMs"];
      const cpName = sealed.disks.find((d) => d.checkpoint)?.checkpoint;
      const checkpoint = cpName
        ? await deps.backup.hypervisor.checkpoint(req.domainUuid, cpName, ctx.signal).catch(() => undefined)
        : undefined;
      yield {
        jobId: req.jobId,
        event: backupResultEvent(sealed, typeof fw === "number" ? fw : undefined, checkpoint, []),
      };
      return;
    }
    // A backup's outcome is its sealed manifest, found above: no final events are kept in memory.
    const streams = jobStreamsOf<RunBackupResponse>(deps.jobs, "backup", 0);
    // Re-attach (the coordinator restarted or its stream broke): follow the job, never start it twice.
    if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
    const started = Date.now();
    const { feed, done } = streams.start(
      req.jobId,
      req.domainUuid,
      (signal, f) =>
        // Deferred: the job runs again later, where the domain is then (nothing was changed).
        backupJobEnd(() =>
          runBackup({ ...deps.backup, repository }, deps.config, {
            jobId: req.jobId,
            domain: req.domainUuid,
            mode,
            quiesce,
            ...(req.disks.length ? { disks: req.disks } : {}),
            labels: req.labels,
            bandwidthBytesPerSecond: Number(req.bandwidthLimit),
            fullReasons: req.fullReasons,
            history: { vmUuid: req.domainUuid, snapshots: history },
            signal,
            ...backupFeedCallbacks(req.jobId, f),
          }),
        ),
      (end) => backupEndEvent(req.jobId, end),
    );
    // The repository stays open until the job ends, even if every caller has gone.
    closeRepository = false;
    void reportJobEnd(done, started, deps.onJobEnd).finally(() => repository.close());
    yield* streams.follow(feed, req.jobId, {
      signal: ctx.signal,
      starter: true,
      detach: req.detachOnDisconnect,
    });
  } finally {
    if (closeRepository) await repository.close();
  }
}
