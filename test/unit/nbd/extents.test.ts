import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../shared/src/nbd/constants.js";
import type { Extent } from "../../../shared/src/nbd/extents/Extent.js";
import {
  intersectDirtyWithAllocation,
  planFromAllocation,
} from "../../../shared/src/nbd/extents/intersectDirtyWithAllocation.js";
import { mergeExtents } from "../../../shared/src/nbd/extents/mergeExtents.js";
import { splitExtents } from "../../../shared/src/nbd/extents/splitExtents.js";

/** A contiguous map of `size` bytes starting at 0, as an NBD server would report it. */
const extentMap = (flagValues: number[]) =>
  fc
    .array(fc.record({ length: fc.integer({ min: 1, max: 5000 }), flags: fc.constantFrom(...flagValues) }), {
      minLength: 1,
      maxLength: 40,
    })
    .map((xs) => {
      let offset = 0;
      return xs.map((x) => {
        const e = { offset, ...x };
        offset += x.length;
        return e;
      });
    });

/** Expands a map into one flag value per byte: the reference model for the properties. */
function perByte(map: readonly Extent[], size: number, fill = -1): number[] {
  const out = new Array<number>(size).fill(fill);
  for (const e of map) for (let i = e.offset; i < e.offset + e.length && i < size; i++) out[i] = e.flags;
  return out;
}

const total = (m: readonly { offset: number; length: number }[]) =>
  m.length ? m[m.length - 1]!.offset + m[m.length - 1]!.length : 0;

describe("mergeExtents", () => {
  it("preserves every byte's flags, and leaves no mergeable neighbours", () => {
    fc.assert(
      fc.property(extentMap([0, 1, 2, 3]), (map) => {
        const merged = mergeExtents(map);
        expect(perByte(merged, total(map))).toEqual(perByte(map, total(map)));
        for (let i = 1; i < merged.length; i++) {
          const a = merged[i - 1]!;
          const b = merged[i]!;
          expect(a.offset + a.length === b.offset && a.flags === b.flags).toBe(false);
        }
      }),
    );
  });

  it("keeps gaps and drops empty extents", () => {
    expect(
      mergeExtents([
        { offset: 0, length: 10, flags: 0 },
        { offset: 10, length: 0, flags: 1 },
        { offset: 10, length: 5, flags: 0 },
        { offset: 20, length: 5, flags: 0 },
      ]),
    ).toEqual([
      { offset: 0, length: 15, flags: 0 },
      { offset: 20, length: 5, flags: 0 },
    ]);
  });
});

describe("intersectDirtyWithAllocation", () => {
  it("matches a per-byte model: dirty bytes only; zero iff allocation has the ZERO bit", () => {
    fc.assert(
      fc.property(
        extentMap([0, NBD_STATE_DIRTY]),
        extentMap([0, NBD_STATE_HOLE, NBD_STATE_ZERO, NBD_STATE_HOLE | NBD_STATE_ZERO]),
        (dirty, alloc) => {
          const plan = intersectDirtyWithAllocation(dirty, alloc);
          const size = Math.min(total(dirty), total(alloc));
          const d = perByte(dirty, size);
          const a = perByte(alloc, size);
          const want = d.map((f, i) => (f & NBD_STATE_DIRTY ? (a[i]! & NBD_STATE_ZERO ? 2 : 1) : -1));
          const got = perByte(
            plan.map((p) => ({ offset: p.offset, length: p.length, flags: p.kind === "zero" ? 2 : 1 })),
            size,
          );
          expect(got).toEqual(want);
          // Nothing beyond the common range, sorted, merged.
          expect(total(plan)).toBeLessThanOrEqual(size);
          for (let i = 1; i < plan.length; i++) {
            const x = plan[i - 1]!;
            const y = plan[i]!;
            expect(x.offset + x.length).toBeLessThanOrEqual(y.offset);
            expect(x.offset + x.length === y.offset && x.kind === y.kind).toBe(false);
          }
        },
      ),
    );
  });

  it("records qemu's hole,zero after write-zeroes as zeros and a bare hole as data", () => {
    const dirty = [{ offset: 0, length: 300, flags: NBD_STATE_DIRTY }];
    const alloc = [
      { offset: 0, length: 100, flags: 0 },
      { offset: 100, length: 100, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
      { offset: 200, length: 100, flags: NBD_STATE_HOLE },
    ];
    expect(intersectDirtyWithAllocation(dirty, alloc)).toEqual([
      { offset: 0, length: 100, kind: "data" },
      { offset: 100, length: 100, kind: "zero" },
      { offset: 200, length: 100, kind: "data" },
    ]);
    expect(planFromAllocation(alloc)).toEqual(intersectDirtyWithAllocation(dirty, alloc));
  });
});

describe("splitExtents", () => {
  it("covers the input exactly, respects maxLength and never crosses a chunk boundary", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.nat(3000), length: fc.integer({ min: 0, max: 6000 }) }), {
          maxLength: 12,
        }),
        fc.integer({ min: 7, max: 4096 }),
        fc.option(fc.integer({ min: 1, max: 8192 }), { nil: undefined }),
        (shape, maxLength, chunkSize) => {
          let at = 0;
          const input = shape.map(({ gap, length }, tag) => {
            at += gap;
            const e = { offset: at, length, tag };
            at += length;
            return e;
          });
          const out = splitExtents(input, chunkSize === undefined ? { maxLength } : { maxLength, chunkSize });
          const covered: [number, number][] = [];
          for (const p of out) {
            expect(p.length).toBeGreaterThan(0);
            expect(p.length).toBeLessThanOrEqual(maxLength);
            if (chunkSize)
              expect(Math.floor(p.offset / chunkSize)).toBe(
                Math.floor((p.offset + p.length - 1) / chunkSize),
              );
            covered.push([p.offset, p.offset + p.length]);
          }
          const merged = mergeExtents(
            out.map((p) => ({ offset: p.offset, length: p.length, flags: 0 })),
            () => true,
          );
          const want = mergeExtents(
            input.map((p) => ({ offset: p.offset, length: p.length, flags: 0 })),
            () => true,
          );
          expect(merged).toEqual(want);
          // Fields are carried over to every piece.
          const perTag = new Map<number, number>();
          for (const p of out) perTag.set(p.tag, (perTag.get(p.tag) ?? 0) + p.length);
          for (const e of input) expect(perTag.get(e.tag) ?? 0).toBe(e.length);
        },
      ),
    );
  });

  it("rejects nonsense sizes", () => {
    expect(() => splitExtents([{ offset: 0, length: 1 }], { maxLength: 0 })).toThrow(/maxLength/);
    expect(() => splitExtents([{ offset: 0, length: 1 }], { maxLength: 1, chunkSize: -1 })).toThrow(
      /chunkSize/,
    );
  });
});
