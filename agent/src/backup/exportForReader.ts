import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { BackupJobStateMachine } from "./BackupJobState.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "./BackupRequest.js";
import { findBackupDomain } from "./findBackupDomain.js";
import type { ExportDescriptor } from "./pipeline/descriptor/ExportDescriptor.js";
import { qemuImgImages } from "./pipeline/export/DiskImages.js";
import type { ExportServer } from "./pipeline/export/ExportServer.js";
import type { ExportOutcome, ExportSession } from "./pipeline/export/ExportSession.js";
import { exportBackup } from "./pipeline/export/exportBackup.js";
import type { HistoryEntry } from "./pipeline/history/HistoryEntry.js";
import type { BackupResult } from "./runBackup.js";
import { sealedCheckpoint } from "./sealedCheckpoint.js";

export interface ExportForReaderOptions {
  /** TCP+TLS for the assigned reader (networkExportServer). */
  server: ExportServer;
  /** The VM's sealed snapshots from the coordinator's catalog (TransferSpec.history). */
  history: readonly HistoryEntry[];
  /** The export is up: hand `descriptor` to the reader (export_ready). */
  onExportReady(descriptor: ExportDescriptor): void;
  /** Resolves with what the reader did (FinishExport), rejects when the wait is given up. */
  readerOutcome(signal: AbortSignal): Promise<ExportOutcome>;
}

/**
 * The VM host's half of a network-path backup (docs/transfer-paths.md §4): plan from the catalog's
 * history, export over NBD with TLS, hand the export to the reader, and wait for its outcome. Only
 * a seal keeps the checkpoint; a reader that failed, an abort or a wait given up roll everything
 * back through the export's undo stack. This host never opens the repository.
 */
export async function exportForReader(
  deps: Omit<BackupDeps, "repository">,
  config: BackupConfig,
  req: BackupRequest,
  opts: ExportForReaderOptions,
): Promise<BackupResult> {
  const { hypervisor, log } = deps;
  const { signal } = req;
  const domain = await findBackupDomain(hypervisor, req.domain, signal);
  const states = new BackupJobStateMachine(req.jobId, log, req.onState);
  let session: ExportSession | undefined;
  try {
    session = await exportBackup(deps, config, req, domain, {
      server: opts.server,
      images: deps.images ?? qemuImgImages,
      history: Promise.resolve(opts.history),
      states,
    });
    const exported = session;
    // The reader's progress reaches the coordinator on its own stream; here the job is "reading".
    states.to("reading", { reader: "remote" });
    opts.onExportReady(exported.descriptor);
    const waitStart = performance.now();
    const outcome = await opts.readerOutcome(signal);
    log.info({ jobId: req.jobId, readerMs: performance.now() - waitStart }, "the reader finished");
    if ("failed" in outcome) throw readerFailed(outcome.failed);
    const manifest = outcome.sealed;
    // The checkpoint is kept only for the snapshot of this job and this VM.
    if (manifest.vm.uuid !== domain.uuid || (manifest.jobId !== undefined && manifest.jobId !== req.jobId))
      throw new CairnError(
        "invalid-argument",
        `the reader sealed ${manifest.id} of job ${manifest.jobId ?? "?"} for VM ${manifest.vm.uuid}, not job ${req.jobId} of ${domain.uuid}`,
      );
    states.to("sealing", { bytesRead: manifest.stats.bytesRead });
    const { prunedCheckpoints } = await exported.finish(outcome);
    states.to("succeeded", { snapshotId: manifest.id, bytesRead: manifest.stats.bytesRead });
    return {
      manifest,
      plan: exported.plan,
      bytesRead: manifest.stats.bytesRead,
      freezeWindowMs: exported.descriptor.freezeWindowMs,
      freezePhasesMs: exported.freezePhasesMs,
      prunedCheckpoints,
      offline: exported.descriptor.offline,
      checkpoint: await sealedCheckpoint(hypervisor, domain.name, exported.plan.newCheckpoint, log, signal),
    };
  } catch (err) {
    await session
      ?.finish({ failed: (err as Error).message ?? String(err) })
      .catch((e) => log.error({ err: e, jobId: req.jobId }, "rolling the export back failed"));
    throw states.fail(err, signal);
  }
}

function readerFailed(reason: string): CairnError {
  // Retryable: the coordinator assigns a path again (another mover if one exists).
  return new CairnError("unavailable", `the reader failed: ${reason || "no reason given"}`);
}
