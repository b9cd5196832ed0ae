import { abortError, CairnError } from "../errors/CairnError.js";
import type { SharedChunk } from "./chunks/SharedChunk.js";
import { DiskIndex } from "./index/DiskIndex.js";
import type { BackupKind, DiskEntry, DiskStats } from "./manifest/SnapshotManifest.js";
import type { RestorePointWriter } from "./RestorePointWriter.js";

export interface DiskWriterOptions {
  /** Disk target name, e.g. "vda". */
  target: string;
  virtualSize: number;
  /** Format of the source disk ("qcow2", "raw"), recorded for restore. */
  sourceFormat: string;
  kind: BackupKind;
  /** Chunks this backup does not write come from this restore point (incremental/differential). */
  parent?: { snapshotId: string; target?: string } | undefined;
  checkpoint?: string | null;
  /** Why this disk went full (new chain, new disk, broken bitmap...). */
  fullReason?: string | null;
  /** Partially written chunks kept open waiting for more extents (default 16). */
  maxOpenChunks?: number;
  /**
   * Chunks being hashed/compressed/uploaded at once. Default: 64 MiB worth (256 chunks of 256 KiB),
   * at least 8 and at most 256. Each chunk spends most of its time queued for a worker or for I/O.
   */
  maxInFlight?: number;
  signal?: AbortSignal;
}

/**
 * Bytes of chunks in flight by default. A chunk waits for a worker, then for its pack to fill
 * (4 MiB), then for the pack's write, which took 10-20 ms (p90 ~19 ms) on this machine's disk once
 * its write cache was full: with 16 MiB in flight the writer was waiting on back-pressure 75% of
 * the time. 64 MiB wrote 2 GiB in 3.4-3.5 s instead of 4.2-4.4 s, 32 MiB in 3.8-4.0 s
 * (alternating runs; docs/field-notes.md). Bounded in bytes, so 16 MiB chunks do not hold gigabytes.
 */
const IN_FLIGHT_BYTES = 64 * 1024 * 1024;

export function defaultMaxInFlight(chunkSize: number): number {
  return Math.max(8, Math.min(256, Math.floor(IN_FLIGHT_BYTES / chunkSize)));
}

/** An extent from the agent: data read from NBD, or a range known to read as zeros. */
export type Extent = { offset: number; data: Uint8Array } | { offset: number; length: number; zero: true };

interface OpenChunk {
  /** Shared with the chunk workers, reused across chunks: its bytes are not zero-filled. */
  chunk: SharedChunk;
  /** chunk.plain */
  buf: Buffer;
  /** Sorted, merged [start, end) ranges already written. */
  covered: Array<[number, number]>;
}

/**
 * Writes one disk of a restore point from extents in any order (format §4, §6). Extents are
 * copied into chunk-aligned buffers; a chunk is processed (hash → dedup check → zstd/AES →
 * put) once fully covered, or when evicted/finished, in which case its unwritten ranges come from
 * the parent restore point (or zeros). write() resolves when the data is accepted, so a caller that
 * awaits it is back-pressured; memory stays below (maxOpenChunks + maxInFlight) × chunkSize.
 */
export class DiskWriter {
  entry: DiskEntry | undefined;
  private readonly open = new Map<number, OpenChunk>();
  private readonly processing = new Map<number, Promise<void>>();
  private inFlight = 0;
  /** Moving average of how many recently processed chunks were new (1 = all). */
  private newRate = 1;
  private readonly waiters: Array<() => void> = [];
  private failure: unknown;
  private readonly stats: DiskStats = {
    bytesRead: 0,
    bytesNew: 0,
    bytesStored: 0,
    chunksNew: 0,
    chunksTotal: 0,
  };
  private readonly maxOpen: number;
  private readonly maxInFlight: number;

  private constructor(
    private readonly snapshot: RestorePointWriter,
    private readonly options: DiskWriterOptions,
    private readonly index: DiskIndex,
  ) {
    this.maxOpen = options.maxOpenChunks ?? 16;
    this.maxInFlight = options.maxInFlight ?? defaultMaxInFlight(index.chunkSize);
  }

  static async create(snapshot: RestorePointWriter, options: DiskWriterOptions): Promise<DiskWriter> {
    const repo = snapshot.repository;
    if (!Number.isSafeInteger(options.virtualSize) || options.virtualSize < 0) {
      throw new CairnError(
        "invalid-argument",
        `disk ${options.target}: invalid virtual size ${options.virtualSize}`,
      );
    }
    let index = DiskIndex.empty(repo.chunkSize, options.virtualSize);
    if (options.parent) {
      const parentTarget = options.parent.target ?? options.target;
      const m = await repo.showSnapshot(options.parent.snapshotId, options.signal);
      const d = m.disks.find((x) => x.target === parentTarget);
      if (!d) {
        throw new CairnError(
          "not-found",
          `parent snapshot ${options.parent.snapshotId} in repository ${repo.location} has no disk ${parentTarget}`,
          { hint: "take a full backup of this disk" },
        );
      }
      const parentIndex = await repo.readIndex(
        d.index,
        `snapshot ${m.id} disk ${parentTarget}`,
        options.signal,
      );
      if (parentIndex.chunkSize !== repo.chunkSize) {
        throw new CairnError(
          "failed-precondition",
          `parent restore point ${m.id}/${parentTarget} has another chunk size`,
        );
      }
      index = DiskIndex.derive(parentIndex, options.virtualSize);
      // The parent is sealed and our shared lock keeps GC away: its chunks exist, no need to stat them.
      for (const e of parentIndex.entries()) if (e.id !== undefined) snapshot.assumeStored(e.id);
    }
    return new DiskWriter(snapshot, options, index);
  }

  get target(): string {
    return this.options.target;
  }

  private get what(): string {
    return `disk ${this.options.target} of snapshot ${this.snapshot.snapshotId} in repository ${this.snapshot.repository.location}`;
  }

  private check(signal: AbortSignal | undefined): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.entry) throw new CairnError("failed-precondition", `${this.what} is already finished`);
    if (signal?.aborted) {
      this.failure = abortError(signal, `writing ${this.what}`);
      throw this.failure;
    }
  }

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.options.virtualSize
    ) {
      throw new CairnError(
        "invalid-argument",
        `extent [${offset}, +${length}) is outside ${this.what} (virtual size ${this.options.virtualSize})`,
      );
    }
  }

  /** Writes data at a disk offset; resolves once accepted (buffer reusable). */
  async write(offset: number, data: Uint8Array, signal = this.options.signal): Promise<void> {
    this.check(signal);
    this.checkRange(offset, data.length);
    this.stats.bytesRead += data.length;
    await this.apply(offset, data.length, signal, (c, at, from, n) =>
      c.buf.set(data.subarray(from, from + n), at),
    );
  }

  /**
   * write() of bytes that were read straight into `chunk` (RestorePointWriter.acquireChunk): when they
   * are exactly a whole chunk not otherwise open, the buffer itself becomes that chunk — no copy.
   * Either way the writer owns `chunk` from here on.
   */
  async writeChunk(
    offset: number,
    chunk: SharedChunk,
    length: number,
    signal = this.options.signal,
  ): Promise<void> {
    const cs = this.index.chunkSize;
    const i = Math.floor(offset / cs);
    const whole = offset === i * cs && length === chunk.plain.length && length === this.index.lengthOf(i);
    if (whole && !this.open.has(i)) {
      try {
        this.check(signal);
        this.checkRange(offset, length);
        while (this.processing.has(i)) await this.processing.get(i)?.catch(() => {});
        if (this.failure !== undefined) throw this.failure;
      } catch (e) {
        this.snapshot.releaseChunk(chunk);
        throw e;
      }
      if (!this.open.has(i)) {
        this.stats.bytesRead += length;
        await this.dispatch(i, chunk, signal);
        return;
      }
    }
    try {
      await this.write(offset, chunk.plain.subarray(0, length), signal);
    } finally {
      this.snapshot.releaseChunk(chunk);
    }
  }

  /** Declares a range that reads as zeros (unallocated or zero-detected by the reader). */
  async writeZeroes(offset: number, length: number, signal = this.options.signal): Promise<void> {
    this.check(signal);
    this.checkRange(offset, length);
    const cs = this.index.chunkSize;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const i = Math.floor(pos / cs);
      const n = Math.min(end - pos, i * cs + this.index.lengthOf(i) - pos);
      if (pos === i * cs && n === this.index.lengthOf(i) && !this.open.has(i)) {
        // A whole zero chunk: no buffer, no hashing.
        await this.processing.get(i);
        this.index.set(i, undefined);
      } else {
        await this.apply(pos, n, signal, (c, at, _from, len) => c.buf.fill(0, at, at + len));
      }
      pos += n;
    }
  }

  /** Feeds a whole stream of extents. */
  async writeExtents(
    source: AsyncIterable<Extent> | Iterable<Extent>,
    signal = this.options.signal,
  ): Promise<void> {
    for await (const e of source) {
      if ("data" in e) await this.write(e.offset, e.data, signal);
      else await this.writeZeroes(e.offset, e.length, signal);
    }
  }

  private async apply(
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
    put: (c: OpenChunk, at: number, from: number, n: number) => void,
  ): Promise<void> {
    const cs = this.index.chunkSize;
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const i = Math.floor(abs / cs);
      const at = abs - i * cs;
      const n = Math.min(length - pos, this.index.lengthOf(i) - at);
      const c = await this.openChunk(i);
      put(c, at, pos, n);
      cover(c.covered, at, at + n);
      const first = c.covered[0];
      if (
        c.covered.length === 1 &&
        first &&
        first[0] === 0 &&
        first[1] === c.buf.length &&
        this.open.get(i) === c
      ) {
        this.open.delete(i);
        await this.dispatch(i, c.chunk, signal);
      }
      pos += n;
    }
    while (this.open.size > this.maxOpen) {
      const [i, c] = this.open.entries().next().value as [number, OpenChunk];
      this.open.delete(i);
      await this.complete(i, c, signal);
    }
  }

  private async openChunk(i: number): Promise<OpenChunk> {
    let c = this.open.get(i);
    if (c) return c;
    // A rewrite of a chunk still being completed or processed must start from its new content.
    while (this.processing.has(i)) await this.processing.get(i)?.catch(() => {});
    if (this.failure !== undefined) throw this.failure;
    c = this.open.get(i);
    if (c) return c;
    // A reused buffer holds an earlier chunk's bytes: complete() zeroes whatever is not written.
    const chunk = this.snapshot.acquireChunk(this.index.lengthOf(i));
    c = { chunk, buf: chunk.plain, covered: [] };
    this.open.set(i, c);
    return c;
  }

  /** Fills a partially written chunk's gaps from its previous content, then processes it. */
  private async complete(i: number, c: OpenChunk, signal: AbortSignal | undefined): Promise<void> {
    // Registered before the first await so a concurrent write to chunk i waits for this version.
    const filled = this.fillFromBase(i, c, signal);
    const placeholder = filled.catch(() => {});
    this.processing.set(i, placeholder);
    try {
      await filled;
    } catch (e) {
      this.failure ??= e;
      if (this.processing.get(i) === placeholder) this.processing.delete(i);
      throw e;
    }
    await this.dispatch(i, c.chunk, signal);
  }

  private async fillFromBase(i: number, c: OpenChunk, signal: AbortSignal | undefined): Promise<void> {
    // The buffer holds an earlier chunk's bytes: its gaps read as zeros unless the base has them.
    for (const [s, e] of gaps(c)) c.buf.fill(0, s, e);
    const baseId = this.index.get(i);
    if (baseId !== undefined) {
      const base = await this.snapshot.readChunk(
        baseId,
        `base of ${this.what} at offset ${i * this.index.chunkSize}`,
        signal,
      );
      for (const [s, e] of gaps(c)) c.buf.set(base.subarray(s, Math.min(e, base.length)), s);
    }
  }

  /**
   * Queues chunk i for processing. It is registered in `processing` at once (so a concurrent write
   * to the same chunk waits for it); the returned promise resolves when it got an in-flight slot,
   * which is the back-pressure on the caller.
   */
  private async dispatch(i: number, chunk: SharedChunk, signal: AbortSignal | undefined): Promise<void> {
    let started!: () => void;
    const slot = new Promise<void>((r) => {
      started = r;
    });
    const self: { p?: Promise<void> } = {};
    self.p = (async () => {
      await Promise.resolve(); // run the body only after self.p is set (the finally compares it)
      while (this.inFlight >= this.maxInFlight) await new Promise<void>((r) => this.waiters.push(r));
      this.inFlight++;
      started();
      try {
        this.check(signal);
        await this.process(i, chunk, signal);
      } catch (e) {
        this.failure ??= e;
      } finally {
        this.inFlight--;
        if (this.processing.get(i) === self.p) this.processing.delete(i);
        this.waiters.shift()?.();
      }
    })();
    this.processing.set(i, self.p);
    await slot;
    if (this.failure !== undefined) throw this.failure;
  }

  private async process(i: number, chunk: SharedChunk, signal: AbortSignal | undefined): Promise<void> {
    const repo = this.snapshot.repository;
    try {
      // While most recent chunks were new (a full backup, fresh dirty data), hash and compress in one
      // worker round trip; while they dedup (a rewrite), hash only and skip the wasted compression.
      const eager = this.newRate > 0.5;
      const padTo = repo.store.writeAlignment;
      const h: { id: string; zero: boolean; framed?: Buffer | undefined } = eager
        ? await repo.pool.hashFrameShared("chunk", chunk, { padTo })
        : await repo.pool.hashShared(chunk);
      if (h.zero) {
        this.index.set(i, undefined);
        return;
      }
      const stored = await this.snapshot.storeChunk(
        h.id,
        h.framed,
        async () => (await repo.pool.hashFrameShared("chunk", chunk, { id: h.id, padTo })).framed!,
        signal,
      );
      this.stats.bytesStored += stored.bytesStored;
      if (stored.isNew) {
        this.stats.bytesNew += chunk.plain.length;
        this.stats.chunksNew++;
      }
      this.newRate = this.newRate * 0.9 + (stored.isNew ? 0.1 : 0);
      this.index.set(i, h.id);
    } finally {
      // After the put: a frame made in place is the shared buffer itself.
      this.snapshot.releaseChunk(chunk);
    }
  }

  /** Flushes everything, stores the index and returns the disk's manifest entry. */
  async finish(signal = this.options.signal): Promise<DiskEntry> {
    this.check(signal);
    for (const [i, c] of [...this.open]) {
      this.open.delete(i);
      await this.complete(i, c, signal);
    }
    await this.drain();
    if (this.failure !== undefined) throw this.failure;
    let chunks = 0;
    for (const e of this.index.entries()) if (e.id !== undefined) chunks++;
    this.stats.chunksTotal = chunks;
    const indexId = await this.snapshot.putIndex(this.index, signal);
    const o = this.options;
    this.entry = {
      target: o.target,
      virtualSize: o.virtualSize,
      sourceFormat: o.sourceFormat,
      chunkSize: this.index.chunkSize,
      index: indexId,
      checkpoint: o.checkpoint ?? null,
      parentSnapshot: o.parent?.snapshotId ?? null,
      kind: o.kind,
      fullReason: o.fullReason ?? null,
      stats: { ...this.stats },
    };
    return this.entry;
  }

  /**
   * Called by RestorePointWriter.abort(): further writes fail. Resolves once the chunks already in
   * flight have settled, so nothing of this disk is still being put.
   */
  async abandon(): Promise<void> {
    this.failure ??= new CairnError("aborted", `${this.what} was abandoned`);
    await this.drain();
  }

  /** Waits until no chunk is being processed (their failures are kept in `failure`). */
  private async drain(): Promise<void> {
    while (this.processing.size > 0) await Promise.allSettled([...this.processing.values()]);
  }
}

/** The [start, end) ranges of a chunk buffer that no write covered. */
function* gaps(c: OpenChunk): Generator<[number, number]> {
  let prev = 0;
  for (const [s, e] of c.covered) {
    if (s > prev) yield [prev, s];
    prev = e;
  }
  if (prev < c.buf.length) yield [prev, c.buf.length];
}

/** Adds [s, e) to a sorted list of disjoint ranges, merging neighbours. */
function cover(ranges: Array<[number, number]>, s: number, e: number): void {
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < s) i++;
  let ns = s;
  let ne = e;
  let j = i;
  while (j < ranges.length && ranges[j]![0] <= e) {
    ns = Math.min(ns, ranges[j]![0]);
    ne = Math.max(ne, ranges[j]![1]);
    j++;
  }
  ranges.splice(i, j - i, [ns, ne]);
}
