import type { BlockDevice } from "./BlockDevice.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "./constants.js";
import type { Extent } from "./extents/Extent.js";
import { mergeExtents } from "./extents/mergeExtents.js";

/**
 * A sparse in-memory BlockDevice made of fixed-size blocks; unwritten or trimmed blocks are
 * holes that read as zeros. For tests and for serving small synthetic disks.
 */
export class MemoryBlockDevice implements BlockDevice {
  private readonly blocks = new Map<number, Buffer>();

  constructor(
    readonly size: number,
    readonly readOnly = false,
    readonly blockSize = 64 * 1024,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    this.each(offset, length, (b, at, n, pos) => this.blocks.get(b)?.copy(out, pos, at, at + n));
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.each(offset, data.length, (b, at, n, pos) => {
      let blk = this.blocks.get(b);
      if (!blk) {
        blk = Buffer.alloc(this.blockSize);
        this.blocks.set(b, blk);
      }
      data.copy(blk, at, pos, pos + n);
    });
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.each(offset, length, (b, at, n) => {
      if (at === 0 && n === this.blockSize) this.blocks.delete(b);
      else this.blocks.get(b)?.fill(0, at, at + n);
    });
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  async flush(): Promise<void> {}

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const out: Extent[] = [];
    this.each(offset, length, (b, _at, n, pos) => {
      out.push({
        offset: offset + pos,
        length: n,
        flags: this.blocks.has(b) ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO,
      });
    });
    return mergeExtents(out);
  }

  private each(
    offset: number,
    length: number,
    fn: (block: number, at: number, n: number, pos: number) => void,
  ) {
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const b = Math.floor(abs / this.blockSize);
      const at = abs - b * this.blockSize;
      const n = Math.min(this.blockSize - at, length - pos);
      fn(b, at, n, pos);
      pos += n;
    }
  }
}
