import type { Logger } from "../../../../../shared/src/log/createLogger.js";
import { TokenBucket } from "../../../../../shared/src/repository/decorators/TokenBucket.js";
import type { SnapshotManifest } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import { CONFIG_FILES_KEY } from "../../../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { Repository } from "../../../../../shared/src/repository/Repository.js";
import type { RestorePointWriter } from "../../../../../shared/src/repository/RestorePointWriter.js";
import type { BackupProgress } from "../../BackupRequest.js";
import { readExportsIntoSnapshot } from "../../readExportsIntoSnapshot.js";
import type { ExportDescriptor } from "../descriptor/ExportDescriptor.js";

export interface ReadAndSealOptions {
  jobId: string;
  labels?: Record<string, string> | undefined;
  requestSize: number;
  depth: number;
  signal: AbortSignal;
  log: Logger;
  /** The job's own limit on its reads, bytes/s; 0 or absent for none. */
  maxBytesPerSecond?: number | undefined;
  /** This agent's limit on everything it reads (transfer.maxReadBytesPerSecond), shared by its jobs. */
  agentLimiter?: TokenBucket | undefined;
  /** A writer opened already (locally, beside planning: a locked repository fails before any change). */
  writer?: RestorePointWriter | undefined;
  onProgress?: ((p: BackupProgress) => void) | undefined;
  onStage?: ((stage: "reading" | "sealing", details: Record<string, unknown>) => void) | undefined;
  /** Every byte is read: the exporter may end its export now, beside the seal. */
  onRead?: (() => void) | undefined;
}

/**
 * The reading half of a backup, on whichever agent reads (the VM host locally, a mover on the
 * network path): opens the restore point (the repository's shared lock), reads every disk of the
 * descriptor, throttled (§7), and seals with what the exporter captured. An unsealed snapshot is
 * aborted. Returns the manifest, which the exporter's finish() needs to keep its checkpoint.
 */
export async function readAndSeal(
  repository: Repository,
  descriptor: ExportDescriptor,
  opts: ReadAndSealOptions,
): Promise<{ manifest: SnapshotManifest; bytesRead: number }> {
  const { signal } = opts;
  const t0 = performance.now();
  const writer = opts.writer ?? (await repository.beginSnapshot({ vm: descriptor.domain, signal }));
  const begun = performance.now();
  try {
    opts.onStage?.(
      "reading",
      descriptor.offline ? { offline: true } : { consistency: descriptor.consistency.kind },
    );
    const throttle = throttleOf(opts.maxBytesPerSecond ?? 0, descriptor.maxBytesPerSecond, opts.agentLimiter);
    const { bytesRead, phasesMs } = await readExportsIntoSnapshot(
      writer,
      { newCheckpoint: descriptor.newCheckpoint, disks: descriptor.disks.map((d) => d.plan) },
      descriptor.disks,
      {
        requestSize: opts.requestSize,
        depth: opts.depth,
        chunkSize: repository.chunkSize,
        signal,
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        ...(throttle ? { throttle } : {}),
      },
    );
    opts.onRead?.();
    opts.onStage?.("sealing", { bytesRead });
    const read = performance.now();
    const { jobId } = opts;
    const { mode } = descriptor;
    const manifest = await writer.seal({
      domainXml: descriptor.domainXml,
      consistency: descriptor.consistency,
      labels: opts.labels ?? {},
      jobId,
      // extra.jobId too: readers older than the manifest's jobId field look there.
      extra: descriptor.offline
        ? { jobId, mode, offline: true, [CONFIG_FILES_KEY]: descriptor.configFiles }
        : {
            jobId,
            freezeWindowMs: descriptor.freezeWindowMs ?? null,
            mode,
            [CONFIG_FILES_KEY]: descriptor.configFiles,
          },
      signal,
    });
    // Where a reader's time went: a network read that lags a local one says why here.
    opts.log.info(
      { jobId, bytesRead, phasesMs: { begin: begun - t0, ...phasesMs, seal: performance.now() - read } },
      "read and sealed",
    );
    return { manifest, bytesRead };
  } catch (err) {
    await writer.abort().catch((e) => opts.log.warn({ err: e }, "abort of unsealed snapshot failed"));
    throw err;
  }
}

/**
 * The job's bucket (the smaller of its own limit and the exporter's cap) and the agent's shared one,
 * paid in turn; undefined when nothing limits.
 */
function throttleOf(
  jobLimit: number,
  exportCap: number,
  agent: TokenBucket | undefined,
): ((bytes: number, signal: AbortSignal) => Promise<void>) | undefined {
  const limits = [jobLimit, exportCap].filter((n) => n > 0);
  const job = limits.length ? new TokenBucket(Math.min(...limits)) : undefined;
  if (!job && !agent) return undefined;
  return async (bytes, signal) => {
    await job?.pay(bytes, signal);
    await agent?.pay(bytes, signal);
  };
}
