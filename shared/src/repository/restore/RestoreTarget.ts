/**
 * Where a disk restore writes (one of openRestoreTarget's kinds). The engine (restoreDisk) calls
 * writeData for every chunk that holds data and ensureZero for every run the restore point has as
 * zeros, concurrently and in any order, then commit once, or discard once after a failure.
 */
export interface RestoreTarget {
  readonly path: string;
  readonly kind: "new-file" | "replace-file" | "block-device";
  writeData(offset: number, data: Buffer, signal: AbortSignal): Promise<void>;
  /**
   * Makes [offset, +length) read as zeros; resolves the bytes it had to write (0 where the target
   * reads zeros already: a new file's or qcow2's holes, a device range that is zero).
   */
  ensureZero(offset: number, length: number, signal: AbortSignal): Promise<number>;
  /** Makes everything durable and puts the result at `path`. */
  commit(signal: AbortSignal): Promise<void>;
  /** After a failure: removes what this restore created; a block device is left as it is. */
  discard(): Promise<void>;
}
