/**
 * Extents as the NBD server reports them: a byte range plus the context's flag bits
 * (base:allocation: NBD_STATE_HOLE | NBD_STATE_ZERO; qemu:dirty-bitmap: NBD_STATE_DIRTY).
 * Offsets and lengths are numbers (see constants.ts for why that is safe).
 */
export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

/** What the backup path does with a range: read its bytes, or record it as zeros without reading. */
export type ExtentKind = "data" | "zero";

export interface PlannedExtent {
  offset: number;
  length: number;
  kind: ExtentKind;
}
