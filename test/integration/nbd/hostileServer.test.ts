import net from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { ByteReader } from "../../../shared/src/nbd/ByteReader.js";
import {
  NBD_IHAVEOPT,
  NBD_MAGIC,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "../../../shared/src/nbd/constants.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { serverHandshake } from "../../../shared/src/nbd/ServerHandshake.js";
import { Peers } from "./support/processes.js";

/**
 * Scripted hostile servers. `raw` servers control every byte; `afterGo` servers do a correct
 * handshake (our own serverHandshake) and then answer requests with whatever the test writes.
 */
const peers = new Peers();
const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers.length = 0;
});
afterAll(() => peers.stopAll());

async function listen(onConn: (s: net.Socket) => void): Promise<string> {
  const dir = await peers.tempDir();
  const path = join(dir, "hostile.sock");
  const srv = net.createServer((s) => {
    s.on("error", () => {});
    onConn(s);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(path, r));
  return path;
}

function greeting(): Buffer {
  const g = Buffer.alloc(18);
  g.writeBigUInt64BE(NBD_MAGIC, 0);
  g.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  g.writeUInt16BE(3, 16);
  return g;
}

function optReply(opt: number, type: number, data: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}

async function afterGo(onRequest: (s: net.Socket, header: Buffer) => void): Promise<string> {
  return listen(async (s) => {
    const reader = new ByteReader(s, "client");
    const exports = new Map([
      ["", { size: 1 << 20, flags: 1, minBlock: 1, preferredBlock: 4096, maxPayload: 1 << 20 }],
    ]);
    await serverHandshake(
      { source: reader, write: (b) => s.write(b) },
      { exports, tlsRequired: false },
    ).catch(() => {});
    reader.detach();
    s.on("data", (d: Buffer) => {
      for (let at = 0; at + 28 <= d.length; at += 28) onRequest(s, d.subarray(at, at + 28));
    });
    s.resume();
  });
}

async function expectFails(p: Promise<unknown>, code: string, msg: RegExp, withinMs = 5000) {
  const t0 = Date.now();
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CairnError);
  expect((e as CairnError).code).toBe(code);
  expect((e as CairnError).message).toMatch(msg);
  expect(Date.now() - t0).toBeLessThan(withinMs);
}

describe("client vs hostile servers", () => {
  it("wrong greeting magic", async () => {
    const path = await listen((s) => s.write(Buffer.from("HTTP/1.1 200 OK\r\n\r\n")));
    await expectFails(NbdClient.connect({ target: { path } }), "protocol", /NBDMAGIC/);
  });

  /** Reads client flags and one option at a time; `answer` decides what to send back. */
  async function scripted(answer: (s: net.Socket, opt: number, index: number) => void): Promise<string> {
    return listen(async (s) => {
      const r = new ByteReader(s, "client");
      s.write(greeting());
      try {
        await r.read(4);
        for (let i = 0; ; i++) {
          const h = await r.read(16);
          const len = h.readUInt32BE(12);
          if (len) await r.read(len);
          answer(s, h.readUInt32BE(8), i);
        }
      } catch {
        s.destroy();
      }
    });
  }

  it("endless option replies are cut off at the cap", async () => {
    const path = await scripted((s, opt) => {
      if (opt === 8) return void s.write(optReply(8, 1, Buffer.alloc(0)));
      const ctx = Buffer.alloc(4 + 15);
      ctx.write("base:allocation", 4);
      const flood = () => {
        if (s.destroyed) return;
        const batch = Buffer.concat(
          Array.from({ length: 512 }, () => optReply(opt, NBD_REP_META_CONTEXT, ctx)),
        );
        if (s.write(batch)) setImmediate(flood);
        else s.once("drain", flood);
      };
      flood();
    });
    await expectFails(
      NbdClient.connect({ target: { path }, metaContexts: ["base:allocation"] }),
      "protocol",
      /more than 4096/,
    );
  });

  it("oversized option reply length is refused without allocating it", async () => {
    const path = await scripted((s, opt) => {
      const h = optReply(opt, 1, Buffer.alloc(0));
      h.writeUInt32BE(0x7fffffff, 16);
      s.write(h);
    });
    await expectFails(NbdClient.connect({ target: { path } }), "protocol", /exceeds our cap/);
  });

  it("a server that stalls in the handshake hits the connect timeout", async () => {
    const path = await listen((s) => s.write(greeting().subarray(0, 10)));
    await expectFails(NbdClient.connect({ target: { path }, connectTimeoutMs: 300 }), "timeout", /timed out/);
  });

  it("reply with a bad magic, an unknown handle, or an oversized chunk fails the request", async () => {
    const cases: [(s: net.Socket, h: Buffer) => void, RegExp][] = [
      [(s) => s.write(Buffer.alloc(32, 0x41)), /bad NBD reply magic/],
      [
        (s) => {
          const r = Buffer.alloc(16);
          r.writeUInt32BE(0x67446698, 0);
          r.writeUInt32BE(12345, 12);
          s.write(r);
        },
        /unknown handle/,
      ],
      [
        (s, h) => {
          const r = Buffer.alloc(20);
          r.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
          r.writeUInt16BE(1, 4);
          r.writeUInt16BE(NBD_REPLY_TYPE_OFFSET_DATA, 6);
          h.copy(r, 8, 8, 16);
          r.writeUInt32BE(0xfffffff0, 16);
          s.write(r);
        },
        /read data chunk length/,
      ],
    ];
    for (const [script, msg] of cases) {
      const path = await afterGo(script);
      const c = await NbdClient.connect({ target: { path } });
      await expectFails(c.read(0, 4096), "protocol", msg);
      c.destroy();
    }
  });

  it("a reply truncated by a closed connection is 'unavailable' (retryable)", async () => {
    const path = await afterGo((s, h) => {
      const r = Buffer.alloc(20 + 8 + 100);
      r.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
      r.writeUInt16BE(1, 4);
      r.writeUInt16BE(NBD_REPLY_TYPE_OFFSET_DATA, 6);
      h.copy(r, 8, 8, 16);
      r.writeUInt32BE(8 + 4096, 16);
      s.end(r);
    });
    const c = await NbdClient.connect({ target: { path } });
    const e = await c.read(0, 4096).catch((x: CairnError) => x);
    expect(e).toBeInstanceOf(CairnError);
    expect((e as CairnError).code).toBe("unavailable");
    expect((e as CairnError).transient).toBe(true);
    expect((e as CairnError).details?.["midReply"]).toBe(true);
  });

  it("mapExtents loops over partial block-status replies and clips an overlong last extent", async () => {
    let requests = 0;
    const path = await afterGo((s, h) => {
      requests++;
      const offset = h.readUInt32BE(20);
      const len = h.readUInt32BE(24);
      // One extent per reply, 40000 bytes (or the rest + 777 bytes past the request end).
      const n = Math.min(40_000, len) + (len <= 40_000 ? 777 : 0);
      const p = Buffer.alloc(12);
      p.writeUInt32BE(1, 0);
      p.writeUInt32BE(n, 4);
      p.writeUInt32BE(Math.floor(offset / 40_000) % 2 ? 3 : 0, 8);
      const r = Buffer.alloc(20);
      r.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
      r.writeUInt16BE(1, 4);
      r.writeUInt16BE(5, 6);
      h.copy(r, 8, 8, 16);
      r.writeUInt32BE(p.length, 16);
      s.write(Buffer.concat([r, p]));
    });
    const c = await NbdClient.connect({ target: { path }, metaContexts: ["base:allocation"] });
    const map = await c.mapExtents("base:allocation");
    const size = 1 << 20;
    expect(requests).toBe(Math.ceil(size / 40_000));
    expect(map.reduce((a, e) => a + e.length, 0)).toBe(size);
    expect(map[0]).toEqual({ offset: 0, length: 40_000, flags: 0 });
    expect(map[1]).toEqual({ offset: 40_000, length: 40_000, flags: 3 });
    expect(map.at(-1)!.offset + map.at(-1)!.length).toBe(size);
    c.destroy();
  });
});
