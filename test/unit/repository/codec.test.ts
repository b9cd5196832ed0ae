import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { contentId, frame, looksCompressible, unframe } from "../../../shared/src/repository/chunks/codec.js";

const KiB = 1024;
const text = (n: number) =>
  Buffer.from("cairn backs up virtual machines. ".repeat(Math.ceil(n / 33)).slice(0, n));

describe("chunk framing: compression only where it pays", () => {
  it("stores random data raw (flags without zstd) and compressible data compressed; both round-trip", () => {
    const random = randomBytes(256 * KiB);
    const rid = contentId(random, undefined);
    const rf = frame("chunk", rid, random, undefined, 3);
    expect(rf[1]! & 1).toBe(0);
    expect(rf.length).toBe(random.length + 2);
    expect(Buffer.compare(unframe("chunk", rid, rf, undefined, "chunk r"), random)).toBe(0);
    const t = text(256 * KiB);
    const tid = contentId(t, undefined);
    const tf = frame("chunk", tid, t, undefined, 3);
    expect(tf.length).toBeLessThan(t.length / 10);
    expect(Buffer.compare(unframe("chunk", tid, tf, undefined, "chunk t"), t)).toBe(0);
  });

  it("samples start, a third and two thirds: compressible data in any of them compresses the chunk", () => {
    expect(looksCompressible(randomBytes(256 * KiB))).toBe(false);
    for (const at of [0, 84 * KiB, 170 * KiB]) {
      const b = randomBytes(256 * KiB);
      text(8 * KiB).copy(b, at);
      expect(looksCompressible(b)).toBe(true);
    }
    // Small chunks are compressed outright.
    expect(looksCompressible(randomBytes(32 * KiB))).toBe(true);
  });
});
