/**
 * Merges neighbours that touch (a.offset + a.length === b.offset) and have the same `key`,
 * and drops zero-length entries. Input must be sorted by offset and non-overlapping
 * (what NBD servers and the functions here produce); order is preserved. Pure.
 */
export function mergeExtents<T extends { offset: number; length: number }>(
  extents: readonly T[],
  sameKind: (a: T, b: T) => boolean = defaultSame,
): T[] {
  const out: T[] = [];
  for (const e of extents) {
    if (e.length === 0) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.offset + last.length === e.offset && sameKind(last, e)) {
      out[out.length - 1] = { ...last, length: last.length + e.length };
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

function defaultSame(a: object, b: object): boolean {
  const fa = (a as { flags?: unknown; kind?: unknown }).flags ?? (a as { kind?: unknown }).kind;
  const fb = (b as { flags?: unknown; kind?: unknown }).flags ?? (b as { kind?: unknown }).kind;
  return fa === fb;
}
