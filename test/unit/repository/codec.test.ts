import { createCipheriv, randomBytes } from "node:crypto";
import { Worker } from "node:worker_threads";
import { describe, expect, it, vi } from "vitest";
import { ChunkWorkerPool } from "../../../shared/src/repository/chunks/ChunkWorkerPool.js";
import {
  contentId,
  FRAME_HEADER_BYTES,
  frame,
  frameInPlace,
  looksCompressible,
  unframe,
} from "../../../shared/src/repository/chunks/codec.js";
import type { RepositoryKeys } from "../../../shared/src/repository/crypto/RepositoryKeys.js";

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

describe("framing in place: the chunk buffer is the frame when nothing transforms it", () => {
  const keys: RepositoryKeys = { dataKey: randomBytes(32), idKey: randomBytes(32) };
  const room = (plain: Buffer) => {
    const b = Buffer.alloc(FRAME_HEADER_BYTES + plain.length, 0xee);
    plain.copy(b, FRAME_HEADER_BYTES);
    return b;
  };

  it("raw data: writes the header into the room and returns undefined; the buffer unframes", () => {
    const plain = randomBytes(256 * KiB);
    const id = contentId(plain, undefined);
    const b = room(plain);
    expect(frameInPlace("chunk", id, b, undefined, 3)).toBe(b.length);
    expect(Buffer.compare(b, frame("chunk", id, plain, undefined, 3))).toBe(0);
    expect(Buffer.compare(unframe("chunk", id, b, undefined, "chunk"), plain)).toBe(0);
  });

  it("padded in place to a block multiple when its memory has room; the padding is not payload", async () => {
    const { alignedSharedMemory } = await import("../../../shared/src/repository/chunks/SharedChunk.js");
    const plain = randomBytes(256 * KiB);
    const id = contentId(plain, undefined);
    const b = Buffer.from(alignedSharedMemory(300 * KiB), 0, FRAME_HEADER_BYTES + plain.length);
    plain.copy(b, FRAME_HEADER_BYTES);
    const n = frameInPlace("chunk", id, b, undefined, 3, 4096);
    expect(n).toBe(260 * KiB);
    const framed = Buffer.from(b.buffer, b.byteOffset, n as number);
    expect(Buffer.compare(unframe("chunk", id, framed, undefined, "chunk"), plain)).toBe(0);
    // No room (an ordinary buffer of exactly the frame): unpadded.
    const tight = room(plain);
    expect(frameInPlace("chunk", id, tight, undefined, 3, 4096)).toBe(tight.length);
    // A damaged padding length or an unknown flag is corruption, not a wrong payload.
    const bad = Buffer.from(framed);
    bad.writeUInt16LE(1, bad.length - 2);
    expect(() => unframe("chunk", id, bad, undefined, "chunk c")).toThrow(
      /chunk c is corrupt: bad frame padding/,
    );
    const unknown = Buffer.from(framed);
    unknown[1] = 0x40;
    expect(() => unframe("chunk", id, unknown, undefined, "chunk c")).toThrow(/unknown frame flags/);
  });

  it("compressible or encrypted data: returns a new frame and leaves the buffer's plaintext alone", () => {
    for (const [plain, k] of [
      [text(256 * KiB), undefined],
      [randomBytes(256 * KiB), keys],
    ] as const) {
      const id = contentId(plain, k);
      const b = room(plain);
      const f = frameInPlace("chunk", id, b, k, 3);
      expect(f).toBeInstanceOf(Buffer);
      expect(Buffer.compare(b.subarray(FRAME_HEADER_BYTES), plain)).toBe(0);
      expect(Buffer.compare(unframe("chunk", id, f as Buffer, k, "chunk"), plain)).toBe(0);
    }
  });

  it("pool: shared chunks are hashed and framed by the workers in place, reused after release", async () => {
    const pool = new ChunkWorkerPool(undefined, 3, 2);
    try {
      const c = pool.acquireShared(256 * KiB);
      const plain = randomBytes(256 * KiB);
      plain.copy(c.plain);
      const h = await pool.hashFrameShared("chunk", c);
      expect(h.id).toBe(contentId(plain, undefined));
      expect(h.framed).toBe(c.whole); // in place: no copy of the chunk
      expect(Buffer.compare(unframe("chunk", h.id, h.framed!, undefined, "chunk"), plain)).toBe(0);
      const padded = await pool.hashFrameShared("chunk", c, { padTo: 4096 });
      expect(padded.framed!.length % 4096).toBe(0);
      expect(padded.framed!.buffer).toBe(c.memory); // still in place, now padded
      expect(Buffer.compare(unframe("chunk", h.id, padded.framed!, undefined, "chunk"), plain)).toBe(0);
      c.plain.fill(0);
      expect(await pool.hashShared(c)).toEqual({ id: "", zero: true });
      text(256 * KiB).copy(c.plain);
      const t = await pool.hashFrameShared("chunk", c);
      expect(t.framed).not.toBe(c.whole);
      expect(t.framed!.length).toBeLessThan(c.plain.length / 10);
      pool.releaseShared(c);
      expect(() => pool.releaseShared(c)).toThrow(/released twice/);
      expect(pool.acquireShared(256 * KiB)).toBe(c);
      const other = pool.acquireShared(64 * KiB);
      expect(other).not.toBe(c);
      expect(other.plain.length).toBe(64 * KiB);
    } finally {
      await pool.close();
    }
  });

  it("pool: shared-buffer requests of one event-loop turn share messages (4 a message); replies stay matched", async () => {
    const pool = new ChunkWorkerPool(undefined, 3, 2);
    const posted = vi.spyOn(Worker.prototype, "postMessage");
    try {
      const chunks = Array.from({ length: 10 }, () => pool.acquireShared(64 * KiB));
      const plains = chunks.map((c, i) => {
        const p = i === 3 ? Buffer.alloc(64 * KiB) : i % 2 ? text(64 * KiB) : randomBytes(64 * KiB);
        p.copy(c.plain);
        return p;
      });
      posted.mockClear(); // slab registration above
      // One turn: ten requests, mixed hash-only, framed, and with a given id.
      const results = await Promise.all(
        chunks.map((c, i) =>
          i % 3 === 0
            ? pool.hashShared(c)
            : pool.hashFrameShared("chunk", c, i === 5 ? { id: contentId(plains[5]!, undefined) } : {}),
        ),
      );
      const messages = posted.mock.calls.map(([m]) => m as { op: string; requests?: unknown[] });
      expect(messages.map((m) => m.requests?.length ?? 1)).toEqual([4, 4, 2]);
      results.forEach((r, i) => {
        expect(r.zero, `chunk ${i}`).toBe(i === 3);
        if (i !== 3) expect(r.id, `chunk ${i}`).toBe(contentId(plains[i]!, undefined));
        const framed = (r as { framed?: Buffer | undefined }).framed;
        if (framed)
          expect(Buffer.compare(unframe("chunk", r.id, framed, undefined, "chunk"), plains[i]!)).toBe(0);
      });
      // A later turn is a message of its own.
      posted.mockClear();
      await pool.hashShared(chunks[0]!);
      expect(posted.mock.calls.map(([m]) => (m as { op: string }).op)).toEqual(["hashShared"]);
    } finally {
      posted.mockRestore();
      await pool.close();
    }
  });

  it("pool: a request queued for the next turn fails cleanly when the pool closes first", async () => {
    const pool = new ChunkWorkerPool(undefined, 3, 1);
    const c = pool.acquireShared(64 * KiB);
    const failed = expect(pool.hashShared(c)).rejects.toThrow(/closed/);
    await pool.close();
    await failed;
  });
});

describe("encrypted frames authenticate their header (format §5, frame version 2)", () => {
  const keys: RepositoryKeys = { dataKey: randomBytes(32), idKey: randomBytes(32) };
  const plain = text(64 * KiB);
  const id = contentId(plain, keys);

  it.each([
    ["the compression flag", 1, 1],
    ["the version byte (2 to 1: the legacy AAD)", 0, 3],
    ["the version byte (2 to 3)", 0, 1],
  ] as const)("a frame with %s changed fails: corrupt", (_, at, xor) => {
    const f = frame("chunk", id, plain, keys, 1);
    expect([f[0], f[1]]).toEqual([2, 2 | 1]);
    expect(unframe("chunk", id, f, keys, "chunk c").equals(plain)).toBe(true);
    f[at] = (f[at] ?? 0) ^ xor;
    expect(() => unframe("chunk", id, f, keys, "chunk c")).toThrow(
      at === 0 && f[0] === 3 ? /unknown frame version 3/ : /chunk c is corrupt: authentication failed/,
    );
  });

  it("a frame of version 2 without the encryption flag is corrupt", () => {
    const f = frame("chunk", id, plain, keys, 1);
    f[1] = 1;
    expect(() => unframe("chunk", id, f, keys, "chunk c")).toThrow(
      /frame version 2 is only written encrypted/,
    );
  });

  it("a legacy version-1 encrypted frame (AAD without the header) still reads", () => {
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", keys.dataKey, nonce);
    c.setAAD(Buffer.from(`cairn/1/chunk/${id}`));
    const legacy = Buffer.concat([Buffer.from([1, 2]), nonce, c.update(plain), c.final(), c.getAuthTag()]);
    expect(unframe("chunk", id, legacy, keys, "chunk c").equals(plain)).toBe(true);
    legacy[0] = 2; // the same bytes claimed as version 2 use the other AAD
    expect(() => unframe("chunk", id, legacy, keys, "chunk c")).toThrow(/authentication failed/);
  });
});
