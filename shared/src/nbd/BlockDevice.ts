import type { Extent } from "./extents/Extent.js";

/**
 * Port: what NbdServer serves. Implementations: FileBlockDevice (raw file), MemoryBlockDevice
 * (sparse, in memory, for tests); the restore path adapts a repository restore point to it.
 *
 * Offsets are byte numbers; NbdServer bounds-checks every request against `size` and the
 * maximum payload before calling, so implementations see only valid ranges. Every call gets an
 * AbortSignal that fires when the client disconnects or the server closes.
 */
export interface BlockDevice {
  readonly size: number;
  /** Read-only devices get NBD_FLAG_READ_ONLY and CAN_MULTI_CONN; writes are refused with EPERM. */
  readonly readOnly: boolean;
  read(offset: number, length: number, signal: AbortSignal): Promise<Buffer>;
  write?(offset: number, data: Buffer, signal: AbortSignal): Promise<void>;
  /** Optional; the server falls back to writing zero buffers. */
  writeZeroes?(offset: number, length: number, signal: AbortSignal): Promise<void>;
  /** Optional; TRIM is only advertised when present. */
  trim?(offset: number, length: number, signal: AbortSignal): Promise<void>;
  flush?(signal: AbortSignal): Promise<void>;
  /**
   * base:allocation for a range: contiguous extents starting at `offset` with NBD_STATE_HOLE /
   * NBD_STATE_ZERO flags. May describe less than `length` but must describe something. Without
   * it the server reports the whole range as allocated data.
   */
  blockStatus?(offset: number, length: number, signal: AbortSignal): Promise<Extent[]>;
  /** Dirty bitmaps served as qemu:dirty-bitmap:NAME (as QEMU's NBD server does for a backup). */
  readonly dirtyBitmaps?: readonly string[];
  /** qemu:dirty-bitmap:NAME for a range: contiguous extents, flag NBD_STATE_DIRTY where dirty. */
  dirtyStatus?(bitmap: string, offset: number, length: number, signal: AbortSignal): Promise<Extent[]>;
  close?(): Promise<void>;
}
