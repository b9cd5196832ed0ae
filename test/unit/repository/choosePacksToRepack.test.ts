import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  choosePacksToRepack,
  type PackUsage,
  type RepackPolicy,
} from "../../../shared/src/repository/gc/choosePacksToRepack.js";

const MiB = 1024 * 1024;
const usage = fc
  .array(
    fc.record({
      size: fc.integer({ min: 1, max: 6 * MiB }),
      liveShare: fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
      old: fc.boolean(),
    }),
    { maxLength: 40 },
  )
  .map((ps) =>
    ps.map(
      (p, i): PackUsage => ({
        pack: `p${i}`,
        size: p.size,
        liveBytes: Math.floor(p.size * p.liveShare),
        old: p.old,
      }),
    ),
  );
const policy = fc.record({
  minUnusedFraction: fc.double({ min: 0.01, max: 1, noNaN: true }),
  smallPackBytes: fc.integer({ min: 0, max: 4 * MiB }),
});

const sparse = (p: PackUsage, pol: RepackPolicy) => (p.size - p.liveBytes) / p.size >= pol.minUnusedFraction;

describe("choosePacksToRepack (property)", () => {
  it("never touches young packs or packs without live bytes; always takes old sparse ones", () => {
    fc.assert(
      fc.property(usage, policy, (packs, pol) => {
        const chosen = choosePacksToRepack(packs, pol);
        for (const p of packs) {
          if (!p.old || p.liveBytes === 0) expect(chosen.has(p.pack)).toBe(false);
          else if (sparse(p, pol)) expect(chosen.has(p.pack)).toBe(true);
        }
      }),
    );
  });

  it("a dense pack is chosen only when small, and never alone", () => {
    fc.assert(
      fc.property(usage, policy, (packs, pol) => {
        const chosen = choosePacksToRepack(packs, pol);
        const dense = packs.filter((p) => chosen.has(p.pack) && !sparse(p, pol));
        for (const p of dense) expect(p.size).toBeLessThan(pol.smallPackBytes);
        if (dense.length > 0) expect(chosen.size).toBeGreaterThanOrEqual(2);
      }),
    );
  });

  it("with small-pack merging off, only sparse packs are chosen", () => {
    fc.assert(
      fc.property(usage, fc.double({ min: 0.01, max: 1, noNaN: true }), (packs, f) => {
        const pol = { minUnusedFraction: f, smallPackBytes: 0 };
        for (const id of choosePacksToRepack(packs, pol))
          expect(sparse(packs.find((p) => p.pack === id)!, pol)).toBe(true);
      }),
    );
  });
});
