import { FRAME_HEADER_BYTES } from "./codec.js";

/** Memory page size that O_DIRECT buffers are aligned to (the largest logical block size in use). */
export const DIRECT_ALIGNMENT = 4096;

const pageAligned = new WeakSet<ArrayBufferLike>();

// This project's TypeScript lib has no WebAssembly declarations: the one constructor used, typed here.
const { Memory } = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: ArrayBufferLike };
    };
  }
).WebAssembly;

/**
 * True when `u` starts on a DIRECT_ALIGNMENT boundary in memory, so LocalObjectStore may write it
 * with O_DIRECT. JavaScript cannot see addresses: only memory from alignedSharedMemory() is known
 * to be aligned (WebAssembly memory starts on a page).
 */
export function isPageAligned(u: Uint8Array): boolean {
  return pageAligned.has(u.buffer) && u.byteOffset % DIRECT_ALIGNMENT === 0;
}

/** Shared memory whose first byte is page-aligned (a shared WebAssembly.Memory's buffer). */
export function alignedSharedMemory(bytes: number): SharedArrayBuffer {
  const pages = Math.ceil(bytes / 65536);
  const memory = new Memory({ initial: pages, maximum: pages, shared: true });
  const sab = memory.buffer as SharedArrayBuffer;
  pageAligned.add(sab);
  return sab;
}

/**
 * A chunk buffer in shared memory, known to every chunk worker by `sid` (ChunkWorkerPool
 * .acquireShared). Layout: FRAME_HEADER_BYTES of room, then the plaintext, so an unencrypted chunk
 * that does not compress is framed in place and written straight from here; `whole` starts on a
 * page, so that write can bypass the page cache (O_DIRECT).
 */
export class SharedChunk {
  /** Header room + plaintext: the frame itself after an in-place framing. */
  readonly whole: Buffer;
  /** Where the chunk's bytes go. */
  readonly plain: Buffer;

  constructor(
    readonly sid: number,
    readonly memory: SharedArrayBuffer,
    readonly offset: number,
    length: number,
  ) {
    this.whole = Buffer.from(memory, offset, FRAME_HEADER_BYTES + length);
    this.plain = this.whole.subarray(FRAME_HEADER_BYTES);
  }

  /** The frame made in place, `length` bytes from the start of `whole` (may include padding). */
  frame(length: number): Buffer {
    if (length < this.whole.length || this.offset + length > this.memory.byteLength)
      throw new RangeError(`frame of ${length} bytes does not fit shared chunk ${this.sid}`);
    return length === this.whole.length ? this.whole : Buffer.from(this.memory, this.offset, length);
  }

  /** Bytes between consecutive chunks of one slab: header room + length, rounded up to a page. */
  static strideFor(length: number): number {
    return Math.ceil((FRAME_HEADER_BYTES + length) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  }
}
