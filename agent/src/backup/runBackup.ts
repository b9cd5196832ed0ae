import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { FreezePhases } from "../guest/withFrozenGuest.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import { BackupJobStateMachine } from "./BackupJobState.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "./BackupRequest.js";
import { findBackupDomain } from "./findBackupDomain.js";
import { qemuImgImages } from "./pipeline/export/DiskImages.js";
import type { ExportSession } from "./pipeline/export/ExportSession.js";
import { exportBackup } from "./pipeline/export/exportBackup.js";
import { localExportServer } from "./pipeline/export/localExportServer.js";
import { readAndSeal } from "./pipeline/read/readAndSeal.js";
import type { BackupPlan } from "./planDisks.js";
import { readVmHistory } from "./readVmHistory.js";
import { sealedCheckpoint } from "./sealedCheckpoint.js";

/** Why a job did not start and should run later, maybe on another host (CairnError details.deferred). */
export type DeferredCause = "migrating" | "moved";

/** The cause when `err` says the job was deferred, not failed. */
export function deferredCause(err: unknown): DeferredCause | undefined {
  const d = isCairnError(err) ? err.details?.["deferred"] : undefined;
  return d === "migrating" || d === "moved" ? d : undefined;
}

export interface BackupResult {
  manifest: SnapshotManifest;
  plan: BackupPlan;
  /** Bytes read from the NBD exports (what the changed-block tracking let us skip is not here). */
  bytesRead: number;
  freezeWindowMs: number | undefined;
  /** The freeze window split into the freeze call, begin while frozen, and the thaw call. */
  freezePhasesMs?: FreezePhases | undefined;
  prunedCheckpoints: string[];
  /** Shut off: exported by qemu-nbd. */
  offline: boolean;
  /** The checkpoint made, with libvirt's XML for the ledger (undefined for copy, or when not read). */
  checkpoint: CheckpointInfo | undefined;
}

/**
 * Backs up a domain on this host, LAN-free: the pipeline's export, read-and-seal and finish stages
 * in one process (agent/src/backup/pipeline/, docs/transfer-paths.md §4). A domain that is not
 * here, or that a migration holds, is deferred (CairnError with details.deferred) before anything
 * is changed. The repository's shared lock is taken beside planning, so a repository a prune holds
 * fails the job before any checkpoint, freeze or export.
 */
export async function runBackup(
  deps: BackupDeps,
  config: BackupConfig,
  req: BackupRequest,
): Promise<BackupResult> {
  const { hypervisor, repository, log } = deps;
  const { signal } = req;
  const domain = await findBackupDomain(hypervisor, req.domain, signal);
  const states = new BackupJobStateMachine(req.jobId, log, req.onState);
  const writer = repository.beginSnapshot({ vm: { uuid: domain.uuid, name: domain.name }, signal });
  writer.catch(() => {}); // awaited by the export stage beside planning
  let session: ExportSession | undefined;
  try {
    session = await exportBackup(deps, config, req, domain, {
      server: deps.exportServer ?? localExportServer,
      images: deps.images ?? qemuImgImages,
      history: readVmHistory(repository, req.history, domain.uuid, signal),
      ready: writer,
      states,
    });
    const exported = session;
    const { manifest, bytesRead } = await readAndSeal(repository, exported.descriptor, {
      jobId: req.jobId,
      labels: req.labels,
      requestSize: config.nbdRequestSize,
      depth: config.nbdDepth,
      signal,
      log,
      maxBytesPerSecond: req.bandwidthBytesPerSecond,
      agentLimiter: deps.readLimiter,
      writer: await writer,
      onProgress: req.onProgress,
      onStage: (stage, details) => states.to(stage, details),
      onRead: () => void exported.endExport(),
    });
    const { prunedCheckpoints } = await exported.finish({ sealed: manifest });
    states.to("succeeded", { snapshotId: manifest.id, bytesRead });
    const checkpoint = await sealedCheckpoint(
      hypervisor,
      domain.name,
      exported.plan.newCheckpoint,
      log,
      signal,
    );
    return {
      manifest,
      plan: exported.plan,
      bytesRead,
      freezeWindowMs: exported.descriptor.freezeWindowMs,
      freezePhasesMs: exported.freezePhasesMs,
      prunedCheckpoints,
      offline: exported.descriptor.offline,
      checkpoint,
    };
  } catch (err) {
    // A writer the export stage never handed on (readAndSeal aborts its own; a sealed one stays).
    await writer.then((w) => w.abort()).catch(() => {});
    await session
      ?.finish({ failed: (err as Error).message ?? String(err) })
      .catch((e) => log.error({ err: e, jobId: req.jobId }, "rolling the export back failed"));
    throw states.fail(err, signal);
  }
}
