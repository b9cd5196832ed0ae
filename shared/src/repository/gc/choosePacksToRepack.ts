import { PACK_TARGET_BYTES } from "../packs/PackWriter.js";

/** When GC rewrites a pack that still holds live chunks (format §9). */
export interface RepackPolicy {
  /**
   * A pack whose unreferenced bytes are at least this share of its size is rewritten with only its
   * live chunks. 0.2: an incremental-forever chain frees space in steps of a fifth of a pack,
   * while GC copies at most ~4× the bytes it frees.
   */
  minUnusedFraction: number;
  /**
   * Packs smaller than this (the tail of a backup, an incremental that wrote a few chunks at a
   * time) are merged when there are at least two: fewer objects to list and fetch.
   */
  smallPackBytes: number;
}

export const DEFAULT_REPACK_POLICY: RepackPolicy = {
  minUnusedFraction: 0.2,
  smallPackBytes: PACK_TARGET_BYTES / 4,
};

/** What GC knows of one pack it keeps. */
export interface PackUsage {
  pack: string;
  /** The pack object's size. */
  size: number;
  /** Bytes of frames a sealed snapshot references (counted once per chunk id). */
  liveBytes: number;
  /** Older than GC's grace period: only such packs are touched. */
  old: boolean;
}

/**
 * The packs to rewrite with their live chunks only. Pure: never a pack inside the grace period,
 * never one without live bytes (GC deletes those whole), a lone small pack only when it is sparse
 * too (rewriting it alone would make another small pack).
 */
export function choosePacksToRepack(packs: readonly PackUsage[], policy: RepackPolicy): Set<string> {
  const chosen = new Set<string>();
  const small: string[] = [];
  for (const p of packs) {
    if (!p.old || p.liveBytes <= 0) continue;
    const unused = Math.max(0, p.size - p.liveBytes);
    if (p.size > 0 && unused / p.size >= policy.minUnusedFraction) chosen.add(p.pack);
    else if (p.size < policy.smallPackBytes) small.push(p.pack);
  }
  // Small packs merge with each other or with the sparse ones being rewritten anyway.
  if (small.length >= 2 || (small.length === 1 && chosen.size > 0)) for (const s of small) chosen.add(s);
  return chosen;
}
