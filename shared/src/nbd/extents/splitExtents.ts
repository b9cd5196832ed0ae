import { CairnError } from "../../errors/CairnError.js";

export interface SplitOptions {
  /** Largest piece; the server's maximum request size (NBD_INFO_BLOCK_SIZE maximum). */
  maxLength: number;
  /**
   * Pieces never cross a multiple of this (the repository's fixed chunk size, aligned to disk
   * offsets), so every piece belongs to exactly one chunk. Omit to split by maxLength only.
   */
  chunkSize?: number;
}

/**
 * Splits ranges so that no piece is longer than maxLength or crosses a chunk boundary.
 * Other fields of each extent are copied onto its pieces. Pure; output covers exactly the input.
 */
export function splitExtents<T extends { offset: number; length: number }>(
  extents: Iterable<T>,
  options: SplitOptions,
): T[] {
  const out: T[] = [];
  for (const piece of iterateSplit(extents, options)) out.push(piece);
  return out;
}

/**
 * Lazy form of splitExtents, for multi-GiB plans that should not be materialised as pieces.
 * `maxLength` may be a function: it is asked before each piece (readExtents adapts its request size).
 */
export function* iterateSplit<T extends { offset: number; length: number }>(
  extents: Iterable<T>,
  { maxLength: max, chunkSize }: Omit<SplitOptions, "maxLength"> & { maxLength: number | (() => number) },
): Generator<T> {
  const current = typeof max === "function" ? max : () => max;
  const check = (maxLength: number) => {
    if (!Number.isSafeInteger(maxLength) || maxLength <= 0) {
      throw new CairnError("invalid-argument", `maxLength must be a positive integer, got ${maxLength}`);
    }
    return maxLength;
  };
  check(current());
  if (chunkSize !== undefined && (!Number.isSafeInteger(chunkSize) || chunkSize <= 0)) {
    throw new CairnError("invalid-argument", `chunkSize must be a positive integer, got ${chunkSize}`);
  }
  for (const e of extents) {
    let offset = e.offset;
    const end = e.offset + e.length;
    while (offset < end) {
      let next = Math.min(end, offset + check(current()));
      if (chunkSize !== undefined) {
        const boundary = (Math.floor(offset / chunkSize) + 1) * chunkSize;
        if (boundary < next) next = boundary;
      }
      yield { ...e, offset, length: next - offset };
      offset = next;
    }
  }
}
