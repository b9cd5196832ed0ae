import type { PlannedExtent } from "../../../shared/src/nbd/extents/Extent.js";
import {
  intersectDirtyWithAllocation,
  planFromAllocation,
} from "../../../shared/src/nbd/extents/intersectDirtyWithAllocation.js";
import { NbdClient, type NbdClientOptions } from "../../../shared/src/nbd/NbdClient.js";
import { readExtentsTo } from "../../../shared/src/nbd/readExtents.js";
import type { SharedChunk } from "../../../shared/src/repository/chunks/SharedChunk.js";
import type { RestorePointWriter } from "../../../shared/src/repository/RestorePointWriter.js";
import type { ExportEndpoint } from "../transfer/JobTls.js";
import type { BackupProgress } from "./BackupRequest.js";
import { ProgressTracker } from "./ProgressTracker.js";
import type { BackupPlan } from "./planDisks.js";

/** One disk's point-in-time NBD export (libvirt's pull backup, or qemu-nbd for a shut-off VM). */
export interface DiskExport {
  target: string;
  /** A unix socket (local), or TCP with the job's TLS (network path, docs/transfer-paths.md §5). */
  endpoint: ExportEndpoint;
  exportName: string;
  /** Dirty bitmap exposed as qemu:dirty-bitmap:NAME (incremental/differential reads). */
  dirtyBitmap?: string | undefined;
  /** The disk's format as the domain has it (recorded in the manifest). */
  sourceFormat: string;
}

export interface ReadExportsOptions {
  requestSize: number;
  depth: number;
  chunkSize: number;
  signal: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /**
   * Paid for every piece read before it is written (a bandwidth limit): while it waits, the bounded
   * read window stays full, so the NBD reads themselves slow down.
   */
  throttle?: (bytes: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Reads every planned disk from its export into the snapshot being written: incremental disks read
 * dirty ∩ allocated ranges (dirty ranges that read as zeros are recorded, not read), full disks every
 * allocated range. Maps are taken first so progress knows the total. Returns the bytes read.
 */
export async function readExportsIntoSnapshot(
  writer: RestorePointWriter,
  plan: BackupPlan,
  exports: readonly DiskExport[],
  opts: ReadExportsOptions,
): Promise<{ bytesRead: number; phasesMs: { connect: number; map: number; read: number } }> {
  const { signal } = opts;
  const progress = new ProgressTracker(opts.onProgress);
  let bytesRead = 0;
  const phasesMs = { connect: 0, map: 0, read: 0 };
  let t = performance.now();
  const lap = (phase: keyof typeof phasesMs) => {
    const now = performance.now();
    phasesMs[phase] += now - t;
    t = now;
  };
  const connections: { target: string; client: NbdClient; extents: PlannedExtent[] }[] = [];
  try {
    for (const e of exports) {
      const p = plan.disks.find((x) => x.target === e.target);
      const dirtyCtx = p?.incrementalFrom && e.dirtyBitmap ? `qemu:dirty-bitmap:${e.dirtyBitmap}` : undefined;
      const client = await NbdClient.connect({
        ...connectTarget(e.endpoint),
        exportName: e.exportName,
        metaContexts: dirtyCtx ? ["base:allocation", dirtyCtx] : ["base:allocation"],
        signal,
      });
      lap("connect");
      const entry = { target: e.target, client, extents: [] as PlannedExtent[] };
      connections.push(entry);
      const allocation = await client.mapExtents("base:allocation", { signal });
      entry.extents = dirtyCtx
        ? intersectDirtyWithAllocation(await client.mapExtents(dirtyCtx, { signal }), allocation)
        : planFromAllocation(allocation);
      progress.addTotal(entry.extents.filter((x) => x.kind === "data").reduce((a, x) => a + x.length, 0));
      lap("map");
    }
    for (const { target, client, extents } of connections) {
      const p = plan.disks.find((x) => x.target === target)!;
      const source = exports.find((x) => x.target === target)!;
      const disk = await writer.addDisk({
        target,
        virtualSize: client.size,
        sourceFormat: source.sourceFormat,
        kind: p.kind,
        parent: p.parentSnapshot ? { snapshotId: p.parentSnapshot } : undefined,
        checkpoint: p.bitmap ? plan.newCheckpoint : null,
        fullReason: p.fullReason,
        signal,
      });
      // Zero ranges matter only over a parent: without one, unwritten chunks are zeros already.
      if (p.parentSnapshot) {
        for (const z of extents) if (z.kind === "zero") await disk.writeZeroes(z.offset, z.length, signal);
      }
      // Reads the size of a whole chunk land in the writer's shared chunk buffers and are hashed
      // and stored from there (DiskWriter.writeChunk), without another copy. Smaller pieces (chunks
      // larger than a request, extent edges) use readExtents' recycled buffers: write() copies them.
      const r = await readExtentsTo<SharedChunk>(
        client,
        extents.filter((x) => x.kind === "data"),
        async (offset, data, chunk) => {
          await opts.throttle?.(data.length, signal);
          await (chunk
            ? disk.writeChunk(offset, chunk, data.length, signal)
            : disk.write(offset, data, signal));
        },
        {
          signal,
          requestSize: opts.requestSize,
          depth: opts.depth,
          chunkSize: opts.chunkSize,
          reuseBuffers: true,
          allocate: (length) => {
            if (length !== opts.chunkSize) return undefined;
            const c = writer.acquireChunk(opts.chunkSize);
            return { buffer: c.plain, owner: c };
          },
          onProgress: (n) => progress.update("reading", bytesRead + n),
        },
      );
      bytesRead += r.bytesRead;
      await disk.finish(signal);
      lap("read");
    }
  } finally {
    for (const c of connections) await c.client.close().catch(() => c.client.destroy());
  }
  return { bytesRead, phasesMs };
}

/** NbdClient's target and TLS for an endpoint: the job's CA is the only trust anchor (§5). */
function connectTarget(e: ExportEndpoint): Pick<NbdClientOptions, "target" | "tls"> {
  if (e.kind === "unix") return { target: { path: e.path } };
  return {
    target: { host: e.host, port: e.port },
    tls: { ca: e.tls.caPem, cert: e.tls.certPem, key: e.tls.keyPem, servername: e.tls.serverName },
  };
}
