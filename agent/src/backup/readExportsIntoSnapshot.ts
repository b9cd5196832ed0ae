import type { PlannedExtent } from "../../../shared/src/nbd/extents/Extent.js";
import {
  intersectDirtyWithAllocation,
  planFromAllocation,
} from "../../../shared/src/nbd/extents/intersectDirtyWithAllocation.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { readExtentsTo } from "../../../shared/src/nbd/readExtents.js";
import type { SharedChunk } from "../../../shared/src/repository/chunks/SharedChunk.js";
import type { RestorePointWriter } from "../../../shared/src/repository/RestorePointWriter.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { BackupProgress } from "./BackupRequest.js";
import { ProgressTracker } from "./ProgressTracker.js";
import type { BackupPlan } from "./planDisks.js";

/** One disk's point-in-time NBD export (libvirt's pull backup, or qemu-nbd for a shut-off VM). */
export interface DiskExport {
  target: string;
  socketPath: string;
  exportName: string;
  /** Dirty bitmap exposed as qemu:dirty-bitmap:NAME (incremental/differential reads). */
  dirtyBitmap?: string;
}

export interface ReadExportsOptions {
  requestSize: number;
  depth: number;
  chunkSize: number;
  signal: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
}

/**
 * Reads every planned disk from its export into the snapshot being written: incremental disks read
 * dirty ∩ allocated ranges (dirty ranges that read as zeros are recorded, not read), full disks every
 * allocated range. Maps are taken first so progress knows the total. Returns the bytes read.
 */
export async function readExportsIntoSnapshot(
  writer: RestorePointWriter,
  plan: BackupPlan,
  domain: DomainInfo,
  exports: readonly DiskExport[],
  opts: ReadExportsOptions,
): Promise<{ bytesRead: number }> {
  const { signal } = opts;
  const progress = new ProgressTracker(opts.onProgress);
  let bytesRead = 0;
  const connections: { target: string; client: NbdClient; extents: PlannedExtent[] }[] = [];
  try {
    for (const e of exports) {
      const p = plan.disks.find((x) => x.target === e.target);
      const dirtyCtx = p?.incrementalFrom && e.dirtyBitmap ? `qemu:dirty-bitmap:${e.dirtyBitmap}` : undefined;
      const client = await NbdClient.connect({
        target: { path: e.socketPath },
        exportName: e.exportName,
        metaContexts: dirtyCtx ? ["base:allocation", dirtyCtx] : ["base:allocation"],
        signal,
      });
      const entry = { target: e.target, client, extents: [] as PlannedExtent[] };
      connections.push(entry);
      const allocation = await client.mapExtents("base:allocation", { signal });
      entry.extents = dirtyCtx
        ? intersectDirtyWithAllocation(await client.mapExtents(dirtyCtx, { signal }), allocation)
        : planFromAllocation(allocation);
      progress.addTotal(entry.extents.filter((x) => x.kind === "data").reduce((a, x) => a + x.length, 0));
    }
    for (const { target, client, extents } of connections) {
      const p = plan.disks.find((x) => x.target === target)!;
      const source = domain.disks.find((d) => d.target === target)!;
      const disk = await writer.addDisk({
        target,
        virtualSize: client.size,
        sourceFormat: source.format,
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
        (offset, data, chunk) =>
          chunk ? disk.writeChunk(offset, chunk, data.length, signal) : disk.write(offset, data, signal),
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
    }
  } finally {
    for (const c of connections) await c.client.close().catch(() => c.client.destroy());
  }
  return { bytesRead };
}
