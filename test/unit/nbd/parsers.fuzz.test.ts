import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { BufferSource } from "../../../shared/src/nbd/ByteReader.js";
import { ClientHandshake } from "../../../shared/src/nbd/ClientHandshake.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REQUEST_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "../../../shared/src/nbd/constants.js";
import { type InflightRequest, ReplyParser, type ReplySink } from "../../../shared/src/nbd/ReplyParser.js";
import { type NbdRequest, RequestParser } from "../../../shared/src/nbd/RequestParser.js";
import { serverHandshake } from "../../../shared/src/nbd/ServerHandshake.js";

/** Records every event; requests 1..3 are outstanding (a read, a block status, a write). */
function recordingSink() {
  const reqs = new Map<number, InflightRequest>([
    [1, { type: NBD_CMD_READ, offset: 4096, length: 8192 }],
    [2, { type: NBD_CMD_BLOCK_STATUS, offset: 0, length: 1 << 20 }],
    [3, { type: NBD_CMD_WRITE, offset: 0, length: 512 }],
  ]);
  const events: unknown[] = [];
  const sink: ReplySink = {
    lookup: (h) => reqs.get(h),
    onSimpleReply: (h, e) => events.push(["simple", h, e]),
    onData: (h, o, d) => {
      // Views are only valid during the call: record a copy, and prove the bound.
      expect(o).toBeGreaterThanOrEqual(4096);
      expect(o + d.length).toBeLessThanOrEqual(4096 + 8192);
      events.push(["data", h, o, Buffer.from(d).toString("hex")]);
    },
    onHole: (h, o, l) => events.push(["hole", h, o, l]),
    onBlockStatus: (h, c, x) => events.push(["bs", h, c, x]),
    onError: (h, e, m, o) => events.push(["err", h, e, m, o]),
    onDone: (h) => events.push(["done", h]),
  };
  return { sink, events };
}

function chunk(type: number, handle: number, payload: Buffer, done = true): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(done ? NBD_REPLY_FLAG_DONE : 0, 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(handle, 12);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

/** A valid reply stream: read 1 as data + hole, block status 2 with two extents, simple reply 3. */
function validStream(): Buffer {
  const data = Buffer.alloc(8 + 4096, 0xab);
  data.writeUInt32BE(0, 0);
  data.writeUInt32BE(4096, 4);
  const hole = Buffer.alloc(12);
  hole.writeUInt32BE(8192, 4);
  hole.writeUInt32BE(4096, 8);
  const bs = Buffer.alloc(4 + 16);
  bs.writeUInt32BE(7, 0);
  bs.writeUInt32BE(65536, 4);
  bs.writeUInt32BE(3, 8);
  bs.writeUInt32BE(1 << 20, 12);
  const simple = Buffer.alloc(16);
  simple.writeUInt32BE(0x67446698, 0);
  simple.writeUInt32BE(3, 12);
  return Buffer.concat([
    chunk(NBD_REPLY_TYPE_OFFSET_DATA, 1, data, false),
    chunk(NBD_REPLY_TYPE_BLOCK_STATUS, 2, bs),
    chunk(NBD_REPLY_TYPE_OFFSET_HOLE, 1, hole),
    simple,
  ]);
}

function feed(bufs: Buffer[]): { events: unknown[]; error: unknown } {
  const { sink, events } = recordingSink();
  const p = new ReplyParser(sink);
  try {
    for (const b of bufs) p.push(b);
    return { events, error: undefined };
  } catch (e) {
    return { events, error: e };
  }
}

/** Merges consecutive data events so that different split points compare equal. */
function normalise(events: unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const e of events as unknown[][]) {
    const last = out[out.length - 1] as unknown[] | undefined;
    if (
      e[0] === "data" &&
      last?.[0] === "data" &&
      (last[2] as number) + (last[3] as string).length / 2 === e[2]
    ) {
      last[3] = (last[3] as string) + (e[3] as string);
    } else out.push([...e]);
  }
  return out;
}

describe("ReplyParser", () => {
  const stream = validStream();
  const whole = feed([stream]);

  it("parses a valid stream of data, hole, block status and simple replies", () => {
    expect(whole.error).toBeUndefined();
    expect(whole.events.map((e) => (e as unknown[])[0])).toEqual([
      "data",
      "bs",
      "done",
      "hole",
      "done",
      "simple",
    ]);
  });

  it("gives the same events however the stream is split", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(stream.length), { maxLength: 30 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const parts: Buffer[] = [];
        let prev = 0;
        for (const p of points) {
          parts.push(stream.subarray(prev, p));
          prev = p;
        }
        parts.push(stream.subarray(prev));
        const r = feed(parts);
        expect(r.error).toBeUndefined();
        expect(normalise(r.events)).toEqual(normalise(whole.events));
      }),
    );
  });

  it("random bytes: only CairnError('protocol'), never another exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.boolean(), (bytes, withMagic) => {
        const b = Buffer.from(bytes);
        if (withMagic && b.length >= 4) b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
        const r = feed([b]);
        if (r.error !== undefined) {
          expect(r.error).toBeInstanceOf(CairnError);
          expect((r.error as CairnError).code).toBe("protocol");
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("mutated valid streams: protocol errors or consistent events, never crashes", () => {
    fc.assert(
      fc.property(fc.nat(stream.length - 1), fc.integer({ min: 0, max: 255 }), (at, v) => {
        const b = Buffer.from(stream);
        b[at] = v;
        const r = feed([b]);
        if (r.error !== undefined) expect((r.error as CairnError).code).toBe("protocol");
      }),
      { numRuns: 3000 },
    );
  });

  it("rejects oversized, unknown-handle and out-of-range chunks before buffering them", () => {
    const huge = chunk(NBD_REPLY_TYPE_BLOCK_STATUS, 2, Buffer.alloc(0)).subarray(0, 20);
    huge.writeUInt32BE(0xffffffff, 16);
    expect((feed([huge]).error as Error).message).toMatch(/block status chunk length/);
    const bigRead = chunk(NBD_REPLY_TYPE_OFFSET_DATA, 1, Buffer.alloc(0)).subarray(0, 20);
    bigRead.writeUInt32BE(8 + 8193, 16);
    expect((feed([bigRead]).error as Error).message).toMatch(/read data chunk length/);
    expect((feed([chunk(NBD_REPLY_TYPE_OFFSET_HOLE, 99, Buffer.alloc(12))]).error as Error).message).toMatch(
      /unknown handle/,
    );
    const outside = Buffer.alloc(12);
    outside.writeUInt32BE(0, 4);
    outside.writeUInt32BE(4096, 8);
    expect((feed([chunk(NBD_REPLY_TYPE_OFFSET_HOLE, 1, outside)]).error as Error).message).toMatch(/outside/);
    expect((feed([Buffer.from("NBDMAGICxxxxxxxxxxxxxxxx")]).error as Error).message).toMatch(
      /bad NBD reply magic/,
    );
  });
});

describe("RequestParser", () => {
  function req(type: number, offset: number, length: number, payload?: Buffer): Buffer {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(offset, 20);
    h.writeUInt32BE(length, 24);
    return payload ? Buffer.concat([h, payload]) : h;
  }

  it("parses split streams identically", () => {
    const stream = Buffer.concat([req(0, 4096, 512), req(1, 0, 100, Buffer.alloc(100, 7)), req(3, 0, 0)]);
    fc.assert(
      fc.property(fc.array(fc.nat(stream.length), { maxLength: 20 }), (cuts) => {
        const got: NbdRequest[] = [];
        const p = new RequestParser(1 << 20, (r) => got.push(r));
        let prev = 0;
        for (const c of [...new Set(cuts)].sort((a, b) => a - b)) {
          p.push(stream.subarray(prev, c));
          prev = c;
        }
        p.push(stream.subarray(prev));
        expect(got.map((r) => [r.type, r.offset, r.length, r.payload?.toString("hex")])).toEqual([
          [0, 4096, 512, undefined],
          [1, 0, 100, Buffer.alloc(100, 7).toString("hex")],
          [3, 0, 0, undefined],
        ]);
      }),
    );
  });

  it("random bytes: only protocol errors; a write larger than maxPayload is refused before allocating", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.boolean(), (bytes, withMagic) => {
        const b = Buffer.from(bytes);
        if (withMagic && b.length >= 4) b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
        const p = new RequestParser(64 * 1024, () => {});
        try {
          p.push(b);
        } catch (e) {
          expect(e).toBeInstanceOf(CairnError);
          expect((e as CairnError).code).toBe("protocol");
        }
      }),
      { numRuns: 2000 },
    );
    const p = new RequestParser(64 * 1024, () => {});
    expect(() => p.push(req(1, 0, 0xffffffff))).toThrow(/exceeds/);
  });
});

describe("handshakes under random input", () => {
  const isExpected = (e: unknown) =>
    e instanceof CairnError &&
    [
      "protocol",
      "unavailable",
      "unimplemented",
      "not-found",
      "permission-denied",
      "failed-precondition",
    ].includes(e.code);

  it("client handshake: random or truncated server bytes end in a CairnError, never a crash", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), fc.boolean(), async (bytes, validGreeting) => {
        const b = Buffer.from(bytes);
        const greeting = Buffer.from("4e42444d414749434948415645465054" + "0003", "hex");
        const data = validGreeting ? Buffer.concat([greeting, b]) : b;
        const hs = new ClientHandshake({ source: new BufferSource(data), write: () => {} }, "fuzz");
        try {
          await hs.greet();
          await hs.structuredReplies();
          await hs.metaContexts("", ["base:allocation"]);
          await hs.go("");
        } catch (e) {
          if (!isExpected(e)) throw e;
        }
      }),
      { numRuns: 1500 },
    );
  });

  it("server handshake: random or truncated client bytes end in a CairnError, never a crash", async () => {
    const exports = new Map([
      ["", { size: 1 << 20, flags: 1, minBlock: 1, preferredBlock: 4096, maxPayload: 1 << 20 }],
    ]);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), fc.boolean(), async (bytes, validPrefix) => {
        const b = Buffer.from(bytes);
        const prefix = Buffer.from("00000003" + "49484156454f5054", "hex");
        const data = validPrefix ? Buffer.concat([prefix, b]) : b;
        try {
          await serverHandshake(
            { source: new BufferSource(data), write: () => {} },
            { exports, tlsRequired: false },
          );
        } catch (e) {
          if (!(e instanceof CairnError) || !["protocol", "unavailable", "not-found"].includes(e.code))
            throw e;
        }
      }),
      { numRuns: 1500 },
    );
  });
});
