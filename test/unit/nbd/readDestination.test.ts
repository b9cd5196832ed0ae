import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ReadDestination } from "../../../shared/src/nbd/ReadDestination.js";

/** The parts of a scatter read, end to end, must behave exactly like one flat buffer. */
describe("ReadDestination", () => {
  const parts = fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 6 });
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("copy" as const),
      at: fc.nat(),
      data: fc.uint8Array({ minLength: 1, maxLength: 90 }),
    }),
    fc.record({ kind: fc.constant("zero" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 90 }) }),
    fc.record({ kind: fc.constant("view" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 90 }) }),
  );

  it("copyIn, zero and view act on the parts as on one buffer (views stop at a part's end)", () => {
    fc.assert(
      fc.property(parts, fc.array(op, { maxLength: 12 }), (sizes, ops) => {
        const bufs = sizes.map((n) => Buffer.alloc(n, 0xaa));
        const flat = Buffer.alloc(
          sizes.reduce((a, b) => a + b, 0),
          0xaa,
        );
        const d = new ReadDestination(bufs);
        expect(d.length).toBe(flat.length);
        for (const o of ops) {
          const at = o.at % flat.length;
          if (o.kind === "copy") {
            const data = Buffer.from(o.data.subarray(0, flat.length - at));
            d.copyIn(data, at);
            data.copy(flat, at);
          } else if (o.kind === "zero") {
            const n = Math.min(o.length, flat.length - at);
            d.zero(at, n);
            flat.fill(0, at, at + n);
          } else {
            const v = d.view(at, o.length);
            expect(v.length).toBeGreaterThan(0);
            expect(v.length).toBeLessThanOrEqual(o.length);
            expect(v.equals(flat.subarray(at, at + v.length))).toBe(true);
            // A view never crosses into the next part.
            let start = 0;
            for (const n of sizes) {
              if (at < start + n) {
                expect(at + v.length).toBeLessThanOrEqual(start + n);
                break;
              }
              start += n;
            }
          }
        }
        expect(Buffer.concat(bufs).equals(flat)).toBe(true);
      }),
    );
  });
});
