import { CairnError } from "../errors/CairnError.js";
import type { DiskIndex } from "./index/DiskIndex.js";
import type { DiskEntry, SnapshotManifest } from "./manifest/SnapshotManifest.js";
import type { Repository } from "./Repository.js";

/** A run of the disk that is either stored data or reads as zeros (the allocation map). */
export interface AllocationRun {
  offset: number;
  length: number;
  zero: boolean;
}

/**
 * Random-access view of one disk of a sealed snapshot: enough to implement a block device
 * (`read(offset, length)` + `allocation()`), which is how the NBD server serves restore points.
 * Keeps a small cache of decoded chunks so sequential small reads hit each chunk once.
 */
export class RestorePointReader {
  private readonly cache = new Map<number, Promise<Buffer | undefined>>();
  private readonly cacheSize = 16;

  constructor(
    readonly repository: Repository,
    readonly snapshot: SnapshotManifest,
    readonly disk: DiskEntry,
    readonly index: DiskIndex,
  ) {}

  get virtualSize(): number {
    return this.index.virtualSize;
  }
  get chunkSize(): number {
    return this.index.chunkSize;
  }

  private what(i: number): string {
    return `snapshot ${this.snapshot.id} disk ${this.disk.target} offset ${i * this.index.chunkSize}`;
  }

  /** Decoded chunk i, or undefined if it is all zeros. */
  readChunk(i: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    const hit = this.cache.get(i);
    if (hit) {
      this.cache.delete(i);
      this.cache.set(i, hit); // LRU: move to the back
      return hit;
    }
    const p = this.fetchChunk(i, signal);
    this.cache.set(i, p);
    p.catch(() => this.cache.delete(i));
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value as number);
    return p;
  }

  /** Decoded chunk i, or undefined if it is all zeros, read past the cache (for one pass over the disk). */
  fetchChunk(i: number, signal?: AbortSignal): Promise<Buffer | undefined> {
    const id = this.index.get(i);
    return id === undefined
      ? Promise.resolve(undefined)
      : this.repository.readChunk(id, this.what(i), signal);
  }

  /** Reads [offset, offset+length) of the disk (zeros where nothing is stored). */
  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new CairnError(
        "invalid-argument",
        `read [${offset}, +${length}) is outside snapshot ${this.snapshot.id} disk ${this.disk.target} (size ${this.virtualSize})`,
      );
    }
    const out = Buffer.alloc(length);
    const cs = this.index.chunkSize;
    const parts: Promise<void>[] = [];
    for (let pos = offset; pos < offset + length; ) {
      const i = Math.floor(pos / cs);
      const at = pos - i * cs;
      const n = Math.min(offset + length - pos, this.index.lengthOf(i) - at);
      const dst = pos - offset;
      parts.push(
        this.readChunk(i, signal).then((c) => {
          if (c) c.copy(out, dst, at, at + n);
        }),
      );
      pos += n;
    }
    await Promise.all(parts);
    return out;
  }

  /** Merged runs of stored data and zeros covering the whole disk. */
  allocation(): AllocationRun[] {
    const runs: AllocationRun[] = [];
    for (let i = 0; i < this.index.chunkCount; i++) {
      const zero = this.index.get(i) === undefined;
      const len = this.index.lengthOf(i);
      const last = runs[runs.length - 1];
      if (last && last.zero === zero) last.length += len;
      else runs.push({ offset: i * this.index.chunkSize, length: len, zero });
    }
    return runs;
  }
}
