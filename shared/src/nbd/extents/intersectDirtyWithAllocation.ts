import { NBD_STATE_DIRTY, NBD_STATE_ZERO } from "../constants.js";
import type { Extent, PlannedExtent } from "./Extent.js";
import { mergeExtents } from "./mergeExtents.js";

/**
 * Turns a dirty bitmap map and a base:allocation map of the same disk into the ranges an
 * incremental backup must record: dirty ranges only, each one "zero" where allocation says
 * NBD_STATE_ZERO (qemu reports write-zeroed clusters as hole,zero — we record those as zeros
 * instead of reading them) and "data" otherwise. A hole without the zero bit is read: its
 * content is not promised to be zero.
 *
 * Both inputs must be sorted and non-overlapping; ranges covered by only one of the maps are
 * ignored (a server may answer a shorter range than asked). Output is merged. Pure.
 */
export function intersectDirtyWithAllocation(
  dirty: readonly Extent[],
  allocation: readonly Extent[],
): PlannedExtent[] {
  const out: PlannedExtent[] = [];
  let i = 0;
  let j = 0;
  while (i < dirty.length && j < allocation.length) {
    const d = dirty[i]!;
    const a = allocation[j]!;
    const start = Math.max(d.offset, a.offset);
    const dEnd = d.offset + d.length;
    const aEnd = a.offset + a.length;
    const end = Math.min(dEnd, aEnd);
    if (end > start && (d.flags & NBD_STATE_DIRTY) !== 0) {
      out.push({
        offset: start,
        length: end - start,
        kind: (a.flags & NBD_STATE_ZERO) !== 0 ? "zero" : "data",
      });
    }
    if (dEnd <= aEnd) i++;
    if (aEnd <= dEnd) j++;
  }
  return mergeExtents(out);
}

/** The full-backup plan: every range of the allocation map, zero ranges marked as such. Pure. */
export function planFromAllocation(allocation: readonly Extent[]): PlannedExtent[] {
  return mergeExtents(
    allocation.map((a) => ({
      offset: a.offset,
      length: a.length,
      kind: (a.flags & NBD_STATE_ZERO) !== 0 ? ("zero" as const) : ("data" as const),
    })),
  );
}
