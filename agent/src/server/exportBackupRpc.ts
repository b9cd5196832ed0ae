import { X509Certificate } from "node:crypto";
import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  RunBackupRequest,
  RunBackupResponse,
  TransferSpec,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import { QuiesceMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { backupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import { quiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import { exportForReader } from "../backup/exportForReader.js";
import { exportReadyWire } from "../backup/pipeline/descriptor/exportReadyWire.js";
import { networkExportServer } from "../backup/pipeline/export/networkExportServer.js";
import { historyEntryWire } from "../backup/pipeline/history/historyEntryWire.js";
import { jobStreamsOf } from "../jobs/JobStreams.js";
import type { JobTlsMinter, LibvirtTlsDir } from "../transfer/JobTls.js";
import type { PendingExports } from "../transfer/PendingExports.js";
import { backupFeedCallbacks } from "./backupEvents.js";
import { backupEndEvent, backupJobEnd, reportJobEnd } from "./backupJobEnd.js";
import type { BackupRpcDeps } from "./runBackupRpc.js";

/** The VM host's side of the network path (docs/transfer-paths.md §4-§7), from the agent's config. */
export interface TransferDeps {
  /** transfer.address; unset: this host cannot serve network exports. */
  address: string | undefined;
  ports: { min: number; max: number };
  /** How long an export waits for FinishExport while no coordinator follows the job. */
  readerTimeoutMs: number;
  maxExportBytesPerSecond: number;
  minter: JobTlsMinter;
  libvirtTlsDir: LibvirtTlsDir;
  pending: PendingExports;
}

// Host ids are what enrollment accepts; the reader's name goes into its job certificate.
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MAX_CERT = 16 * 1024;
const MAX_HISTORY = 10_000;

/**
 * RunBackup with a transfer: exports the domain over NBD with TLS for the assigned reader, streams
 * export_ready once the export is up, and ends with the job's result after FinishExport (or fails,
 * rolled back, when the reader failed or nobody came back for it). A second caller with the same
 * job id attaches, and receives export_ready again (the coordinator re-attaching its reader).
 */
export async function* exportBackupRpc(
  deps: BackupRpcDeps,
  req: RunBackupRequest,
  spec: TransferSpec,
  ctx: CallContext,
): AsyncGenerator<RunBackupResponse> {
  const transfer = deps.transfer;
  if (!transfer)
    throw new CairnError("failed-precondition", "this agent does not serve network exports", {
      hint: "it has no transfer settings (agent config `transfer`)",
    });
  if (!transfer.address)
    throw new CairnError(
      "failed-precondition",
      "transfer.address is not set in this agent's config: readers on other hosts cannot reach its exports",
      { hint: "set transfer.address to an address of this host the movers reach" },
    );
  if (!HOST_ID.test(spec.readerHostId))
    throw new CairnError(
      "invalid-argument",
      `transfer.reader_host_id ${JSON.stringify(spec.readerHostId)} is not a host id`,
    );
  if (!spec.readerCertificatePem || spec.readerCertificatePem.length > MAX_CERT)
    throw new CairnError("invalid-argument", "transfer.reader_certificate_pem is missing or too large");
  try {
    new X509Certificate(spec.readerCertificatePem);
  } catch (err) {
    throw new CairnError("invalid-argument", "transfer.reader_certificate_pem is not a certificate", {
      cause: err,
    });
  }
  if (spec.history.length > MAX_HISTORY)
    throw new CairnError("invalid-argument", `transfer.history has more than ${MAX_HISTORY} entries`);
  const history = spec.history.map(historyEntryWire.fromWire);
  const mode = backupMode.fromWire(req.mode, "mode");
  const quiesce =
    req.quiesce === QuiesceMode.QUIESCE_MODE_UNSPECIFIED
      ? "preferred"
      : quiesceMode.fromWire(req.quiesce, "quiesce");

  // Finished jobs are remembered: the sealed manifest lives in a repository this host never opens.
  const streams = jobStreamsOf<RunBackupResponse>(deps.jobs, "export", 64);
  if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
  const started = Date.now();
  const address = transfer.address;
  const { feed, done } = streams.start(
    req.jobId,
    req.domainUuid,
    (signal, f) =>
      backupJobEnd(() =>
        exportForReader(
          deps.backup,
          deps.config,
          {
            jobId: req.jobId,
            domain: req.domainUuid,
            mode,
            quiesce,
            ...(req.disks.length ? { disks: req.disks } : {}),
            labels: req.labels,
            fullReasons: req.fullReasons,
            signal,
            ...backupFeedCallbacks(req.jobId, f),
          },
          {
            server: networkExportServer({
              address,
              readerCertificatePem: spec.readerCertificatePem,
              readerName: spec.readerHostId,
              tlsMinter: transfer.minter,
              libvirtTlsDir: transfer.libvirtTlsDir,
              ports: transfer.ports,
              maxBytesPerSecond: transfer.maxExportBytesPerSecond,
            }),
            history,
            onExportReady: (d) =>
              f.publish("export", {
                jobId: req.jobId,
                event: { $case: "exportReady", value: exportReadyWire.toWire(d) },
              }),
            readerOutcome: (s) =>
              transfer.pending.wait(req.jobId, {
                signal: s,
                followed: () => f.followers > 0,
                idleTimeoutMs: transfer.readerTimeoutMs,
              }),
          },
        ),
      ),
    (end) => backupEndEvent(req.jobId, end),
  );
  void reportJobEnd(done, started, deps.onJobEnd);
  yield* streams.follow(feed, req.jobId, {
    signal: ctx.signal,
    starter: true,
    detach: req.detachOnDisconnect,
  });
}
