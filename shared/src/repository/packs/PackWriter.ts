import { randomBytes } from "node:crypto";
import { packKey } from "../layout.js";
import { type ObjectStore, putParts } from "../ports/ObjectStore.js";
import { type ChunkLocation, PACKS_PER_INDEX, type PackRecord } from "./PackIndex.js";

/** Stores a pack index for these packs (staged, like the packs) and returns its id. */
export type WritePackIndex = (records: PackRecord[], signal: AbortSignal | undefined) => Promise<string>;

/** A pack index this writer stored, and what it says. */
export interface WrittenPackIndex {
  id: string;
  records: PackRecord[];
}

/** A new pack's id: 64 random hex characters (format §6a; a pack is not content-addressed). */
export function newPackId(): string {
  return randomBytes(32).toString("hex");
}

/** A pack is closed at this size (format §6a): 4 MiB writes cost a fifth of 256 KiB files' CPU. */
export const PACK_TARGET_BYTES = 4 * 1024 * 1024;
/**
 * ...or when no frame arrived for this long (the end of a disk, a stalled reader). 3 ms made 30-40
 * packs of a 102 MiB incremental of scattered 1 MiB extents (bench:backup), 25 ms 26: the reader's
 * gaps between extents are longer than 3 ms under load. A full fills its packs either way.
 */
export const PACK_IDLE_FLUSH_MS = 25;

interface Pending {
  id: string;
  framed: Uint8Array;
  done: () => void;
  fail: (e: unknown) => void;
}

/**
 * Gathers one backup's new chunk frames into packs (format §6a) and puts each pack staged, in one
 * putParts from the frames' own buffers (no copy: a local store writes it with one O_DIRECT
 * writev). add() resolves once the frame's pack is written — the caller may then reuse the buffer
 * (ObjectStore.put's contract) — so the chunks in flight bound the memory held.
 */
export class PackWriter {
  private batch: Pending[] = [];
  private batchBytes = 0;
  private signal: AbortSignal | undefined;
  private readonly writes = new Set<Promise<void>>();
  /** Packs written and not yet in a pack index. */
  private unindexed: PackRecord[] = [];
  private readonly indexes: WrittenPackIndex[] = [];
  /** Chunks in packs this writer wrote: the backup may read one back (a rewritten chunk's base). */
  private readonly own = new Map<string, ChunkLocation>();
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;

  constructor(
    private readonly store: ObjectStore,
    /** discardStaged() owner of the packs (the backup). */
    private readonly owner: object,
    private readonly writeIndex: WritePackIndex,
    private readonly targetBytes = PACK_TARGET_BYTES,
    private readonly packsPerIndex = PACKS_PER_INDEX,
  ) {}

  /** Queues a chunk's frame; resolves when the pack holding it is written (staged). */
  add(id: string, framed: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.signal = signal;
    return new Promise<void>((done, fail) => {
      this.batch.push({ id, framed, done, fail });
      this.batchBytes += framed.length;
      if (this.batchBytes >= this.targetBytes) this.flush();
      else if (this.timer) this.timer.refresh();
      else this.timer = setTimeout(() => this.flush(), PACK_IDLE_FLUSH_MS);
    });
  }

  /** Where a chunk this writer already wrote is. */
  locate(id: string): ChunkLocation | undefined {
    return this.own.get(id);
  }

  /** Starts writing the frames queued so far as one pack. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.batchBytes = 0;
    const pack = newPackId();
    const record: PackRecord = { pack, chunks: [] };
    let offset = 0;
    for (const p of batch) {
      record.chunks.push({ id: p.id, offset, length: p.framed.length });
      offset += p.framed.length;
    }
    const w = putParts(
      this.store,
      packKey(pack),
      batch.map((p) => p.framed),
      { signal: this.signal, staged: true, owner: this.owner },
    ).then(
      () => {
        this.unindexed.push(record);
        if (this.unindexed.length >= this.packsPerIndex) this.indexUnindexed();
        for (const c of record.chunks) this.own.set(c.id, { pack, offset: c.offset, length: c.length });
        for (const p of batch) p.done();
      },
      (e: unknown) => {
        this.failure ??= e;
        for (const p of batch) p.fail(e);
      },
    );
    this.track(w);
  }

  private track(w: Promise<void>): void {
    this.writes.add(w);
    void w.finally(() => this.writes.delete(w));
  }

  /** Puts a pack index for the packs written since the last one. */
  private indexUnindexed(): void {
    const records = this.unindexed;
    if (records.length === 0) return;
    this.unindexed = [];
    this.track(
      this.writeIndex(records, this.signal).then(
        (id) => {
          this.indexes.push({ id, records });
        },
        (e: unknown) => {
          this.failure ??= e;
        },
      ),
    );
  }

  /** Writes what is queued and waits for every write in flight, without a pack index (abort). */
  async settle(): Promise<void> {
    this.flush();
    while (this.writes.size > 0) await Promise.all(this.writes);
  }

  /**
   * Writes what is queued, then a pack index for the packs no index covers yet; returns every pack
   * index this writer stored (throws the first failure). `signal` then applies to what is left.
   */
  async finish(signal?: AbortSignal): Promise<WrittenPackIndex[]> {
    if (signal) this.signal = signal;
    this.flush();
    while (this.writes.size > 0) await Promise.all(this.writes);
    if (this.failure === undefined) this.indexUnindexed();
    while (this.writes.size > 0) await Promise.all(this.writes);
    if (this.failure !== undefined) throw this.failure;
    return [...this.indexes];
  }
}
