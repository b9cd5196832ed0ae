import { CairnError } from "../../errors/CairnError.js";

const MAGIC = Buffer.from("CAIRNIDX", "latin1");
const VERSION = 1;
const HEADER = 32;
const ID_BYTES = 32;

/**
 * The chunk list of one disk in one restore point (format §6): entry i is the id of the chunk at
 * offset i·chunkSize, or the zero id for an all-zero chunk. Held as one flat buffer (32 B per chunk).
 */
export class DiskIndex {
  readonly chunkSize: number;
  readonly virtualSize: number;
  readonly chunkCount: number;
  private readonly ids: Buffer;

  private constructor(chunkSize: number, virtualSize: number, ids: Buffer) {
    this.chunkSize = chunkSize;
    this.virtualSize = virtualSize;
    this.chunkCount = chunkCountFor(virtualSize, chunkSize);
    this.ids = ids;
  }

  /** An index of an all-zero disk. */
  static empty(chunkSize: number, virtualSize: number): DiskIndex {
    return new DiskIndex(
      chunkSize,
      virtualSize,
      Buffer.alloc(chunkCountFor(virtualSize, chunkSize) * ID_BYTES),
    );
  }

  /** A copy of `parent` resized to `virtualSize` (grown with zero chunks, or truncated). */
  static derive(parent: DiskIndex, virtualSize: number): DiskIndex {
    const idx = DiskIndex.empty(parent.chunkSize, virtualSize);
    parent.ids.copy(idx.ids, 0, 0, Math.min(parent.ids.length, idx.ids.length));
    // A shrunk disk whose new last chunk is partial keeps the parent's longer chunk id: the writer
    // must rewrite that chunk. Clear it so a reader never sees a chunk longer than the disk.
    if (virtualSize < parent.virtualSize && virtualSize % parent.chunkSize !== 0 && idx.chunkCount > 0) {
      idx.ids.fill(0, (idx.chunkCount - 1) * ID_BYTES);
    }
    return idx;
  }

  /** Chunk id at index i, or undefined for an all-zero chunk. */
  get(i: number): string | undefined {
    const off = i * ID_BYTES;
    const b = this.ids.subarray(off, off + ID_BYTES);
    for (const x of b) if (x !== 0) return b.toString("hex");
    return undefined;
  }

  set(i: number, id: string | undefined): void {
    if (i < 0 || i >= this.chunkCount) throw new RangeError(`chunk ${i} outside index of ${this.chunkCount}`);
    if (id === undefined) this.ids.fill(0, i * ID_BYTES, (i + 1) * ID_BYTES);
    else this.ids.write(id, i * ID_BYTES, ID_BYTES, "hex");
  }

  /** Length in bytes of chunk i (the last one may be short). */
  lengthOf(i: number): number {
    return Math.min(this.chunkSize, this.virtualSize - i * this.chunkSize);
  }

  encode(): Buffer {
    const h = Buffer.alloc(HEADER);
    MAGIC.copy(h, 0);
    h.writeUInt32LE(VERSION, 8);
    h.writeUInt32LE(this.chunkSize, 12);
    h.writeBigUInt64LE(BigInt(this.virtualSize), 16);
    h.writeBigUInt64LE(BigInt(this.chunkCount), 24);
    return Buffer.concat([h, this.ids]);
  }

  static decode(b: Buffer, what: string): DiskIndex {
    const bad = (why: string) =>
      new CairnError("corrupt", `${what} is corrupt: ${why}`, {
        hint: "run verify to see which snapshots are affected",
      });
    if (b.length < HEADER || !b.subarray(0, 8).equals(MAGIC)) throw bad("not a disk index");
    if (b.readUInt32LE(8) !== VERSION)
      throw bad(`unknown index version ${b.readUInt32LE(8)} (a newer Cairn may be needed)`);
    const chunkSize = b.readUInt32LE(12);
    const virtualSize = Number(b.readBigUInt64LE(16));
    const count = Number(b.readBigUInt64LE(24));
    if (
      chunkSize === 0 ||
      count !== chunkCountFor(virtualSize, chunkSize) ||
      b.length !== HEADER + count * ID_BYTES
    ) {
      throw bad("header does not match its length");
    }
    return new DiskIndex(chunkSize, virtualSize, Buffer.from(b.subarray(HEADER)));
  }

  /** Every entry in disk order (id undefined = all-zero chunk). */
  *entries(): Iterable<{ index: number; id: string | undefined }> {
    for (let i = 0; i < this.chunkCount; i++) yield { index: i, id: this.get(i) };
  }
}

export function chunkCountFor(virtualSize: number, chunkSize: number): number {
  return Math.ceil(virtualSize / chunkSize);
}
