import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { BASE_ALLOCATION } from "../../../shared/src/nbd/constants.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { readExtents } from "../../../shared/src/nbd/readExtents.js";
import { nbdinfoMap, unixUri } from "./support/nbdinfoMap.js";
import { Peers, run } from "./support/processes.js";

const MiB = 1024 * 1024;
const peers = new Peers();
afterAll(() => peers.stopAll());

async function nbdkit(plugin: string, params: string[], filters: string[] = []) {
  const dir = await peers.tempDir();
  const sock = join(dir, "kit.sock");
  const proc = await peers.nbdkit({ socket: sock, plugin, params, filters });
  return { sock, dir, proc };
}

describe("client vs nbdkit", () => {
  it("memory: writes, zeroes, trims read back; allocation map equals nbdinfo", async () => {
    const { sock } = await nbdkit("memory", ["64M"]);
    const c = await NbdClient.connect({
      target: { path: sock },
      metaContexts: [BASE_ALLOCATION],
      connections: 4,
    });
    try {
      expect(c.size).toBe(64 * MiB);
      const a = randomBytes(5 * MiB + 77);
      await c.write(3 * MiB + 5, a);
      await c.writeZeroes(4 * MiB, MiB);
      await c.trim(20 * MiB, MiB);
      await c.write(30 * MiB, Buffer.alloc(MiB, 0xee), { fua: true });
      await c.flush();
      const model = Buffer.alloc(64 * MiB);
      a.copy(model, 3 * MiB + 5);
      model.fill(0, 4 * MiB, 5 * MiB);
      model.fill(0xee, 30 * MiB, 31 * MiB);
      expect((await c.read(0, 64 * MiB)).equals(model)).toBe(true);
      expect(await c.mapExtents(BASE_ALLOCATION)).toEqual(await nbdinfoMap(unixUri(sock), BASE_ALLOCATION));
    } finally {
      await c.close();
    }
  });

  it("sparse-random: our pipelined read equals nbdcopy's bytes; holes come back as zeros", async () => {
    const { sock, dir } = await nbdkit("sparse-random", ["256M", "seed=42", "percent=20"]);
    const ref = join(dir, "ref.raw");
    await run("nbdcopy", [unixUri(sock), ref]);
    const c = await NbdClient.connect({ target: { path: sock }, metaContexts: [BASE_ALLOCATION] });
    try {
      const map = await c.mapExtents(BASE_ALLOCATION);
      expect(map).toEqual(await nbdinfoMap(unixUri(sock), BASE_ALLOCATION));
      const got = Buffer.alloc(c.size);
      for await (const p of readExtents(c, [{ offset: 0, length: c.size }])) p.data.copy(got, p.offset);
      const hash = (b: Buffer) => createHash("sha256").update(b).digest("hex");
      expect(hash(got)).toBe(hash(await readFile(ref)));
      expect(got.some((x) => x !== 0)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("error filter: EIO on reads is a typed error naming the offset; the connection survives", async () => {
    const dir = await peers.tempDir();
    const s2 = join(dir, "err.sock");
    await peers.nbdkit({
      socket: s2,
      filters: ["error"],
      plugin: "memory",
      params: ["16M", "error-pread=EIO", "error-pread-rate=100%"],
    });
    const c = await NbdClient.connect({ target: { path: s2 } });
    try {
      const e = await c.read(MiB, 4096).catch((x) => x);
      expect(isCairnError(e)).toBe(true);
      expect(e.details.errnoName).toBe("EIO");
      expect(e.message).toMatch(/read at 1048576/);
      // Writes are unaffected and the connection still works after the error.
      await c.write(0, Buffer.alloc(4096, 1));
      await expect(c.read(0, 4096)).rejects.toMatchObject({ details: { errnoName: "EIO" } });
    } finally {
      await c.close();
    }
  });

  it("error filter at 5%: readExtents fails cleanly (no hang) with the failing offset", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "err5.sock");
    await peers.nbdkit({
      socket: s,
      filters: ["error"],
      plugin: "pattern",
      params: ["64M", "error-pread=EIO", "error-pread-rate=5%"],
    });
    const c = await NbdClient.connect({ target: { path: s } });
    try {
      let got = 0;
      const e = await (async () => {
        for await (const p of readExtents(c, [{ offset: 0, length: 64 * MiB }], { requestSize: 64 * 1024 })) {
          got += p.data.length;
        }
      })().catch((x) => x);
      expect(isCairnError(e)).toBe(true);
      expect(e.details.errnoName).toBe("EIO");
      expect(got).toBeLessThan(64 * MiB);
    } finally {
      await c.close();
    }
  });

  it("delay filter: abort cancels one read promptly and the connection stays usable", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "delay.sock");
    await peers.nbdkit({
      socket: s,
      filters: ["delay"],
      plugin: "pattern",
      params: ["16M", "delay-read=1500ms"],
    });
    const c = await NbdClient.connect({ target: { path: s } });
    try {
      const ac = new AbortController();
      const t0 = Date.now();
      const p = c.read(0, 4096, { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await expect(p).rejects.toMatchObject({ code: "aborted" });
      expect(Date.now() - t0).toBeLessThan(1000);
      // The late reply to the aborted read is consumed and discarded; the next read is correct.
      const b = await c.read(8, 8);
      expect(b.readBigUInt64BE(0)).toBe(8n); // pattern plugin: each 8-byte word holds its offset
    } finally {
      await c.close();
    }
  });

  it("delay filter: a request slower than requestTimeoutMs fails with 'timeout', not a hang", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "slow.sock");
    await peers.nbdkit({
      socket: s,
      filters: ["delay"],
      plugin: "pattern",
      params: ["16M", "delay-read=5"],
    });
    const c = await NbdClient.connect({ target: { path: s }, requestTimeoutMs: 400 });
    const t0 = Date.now();
    await expect(c.read(0, 4096)).rejects.toMatchObject({ code: "timeout" });
    expect(Date.now() - t0).toBeLessThan(3000);
    c.destroy();
  });

  it("adaptive request size: a latency-bound source gets larger requests and reads faster", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "latency.sock");
    await peers.nbdkit({
      socket: s,
      filters: ["delay"],
      plugin: "pattern",
      // 10 ms per read: latency dominates clearly even when the host is busy with lab VMs.
      params: ["96M", "delay-read=10ms"],
    });
    const c = await NbdClient.connect({ target: { path: s } });
    try {
      const time = async (adaptive: boolean) => {
        const t0 = performance.now();
        let sizes = 0;
        let n = 0;
        for await (const p of readExtents(c, [{ offset: 0, length: 96 * MiB }], {
          requestSize: 256 * 1024,
          depth: 4,
          adaptive,
        })) {
          sizes = Math.max(sizes, p.data.length);
          n++;
          if (n === 1) expect(p.data.readBigUInt64BE(8)).toBe(8n);
        }
        return { s: performance.now() - t0, largest: sizes };
      };
      const fixed = await time(false);
      const adaptive = await time(true);
      expect(fixed.largest).toBe(256 * 1024);
      expect(adaptive.largest).toBeGreaterThanOrEqual(1024 * 1024);
      expect(adaptive.s).toBeLessThan(fixed.s * 0.75);
    } finally {
      await c.close();
    }
  });

  it("requests larger than chunks: one READ per request, scattered into chunk-sized pieces in order", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "scatter.sock");
    const logfile = join(dir, "requests.log");
    await peers.nbdkit({
      socket: s,
      filters: ["log"],
      plugin: "pattern",
      params: ["64M", `logfile=${logfile}`],
    });
    const c = await NbdClient.connect({ target: { path: s } });
    // Two contiguous extents (grouped across their seam), a gap, then one that starts and ends mid-chunk.
    const extents = [
      { offset: 0, length: 3 * MiB },
      { offset: 3 * MiB, length: 2 * MiB },
      { offset: 9 * MiB + 4096, length: 3 * MiB + 12_288 },
    ];
    const chunk = 256 * 1024;
    try {
      for (const mode of ["allocate", "reuse", "fresh"] as const) {
        let next = 0;
        let ext = 0;
        let bytes = 0;
        for await (const p of readExtents(c, extents, {
          requestSize: MiB,
          chunkSize: chunk,
          depth: 3,
          adaptive: false,
          reuseBuffers: mode === "reuse",
          ...(mode === "allocate"
            ? { allocate: (n: number) => ({ buffer: Buffer.allocUnsafe(chunk + 512), owner: n }) }
            : {}),
        })) {
          if (next === extents[ext]!.offset + extents[ext]!.length) next = extents[++ext]!.offset;
          expect(p.offset).toBe(next);
          expect(p.data.length).toBeLessThanOrEqual(chunk);
          expect(Math.floor(p.offset / chunk)).toBe(Math.floor((p.offset + p.data.length - 1) / chunk));
          // The pattern plugin: every 8-byte word holds its own offset.
          for (let k = 0; k < p.data.length; k += 4096)
            expect(p.data.readBigUInt64BE(k)).toBe(BigInt(p.offset + k));
          next += p.data.length;
          bytes += p.data.length;
        }
        expect(bytes).toBe(extents.reduce((n, e) => n + e.length, 0));
      }
    } finally {
      await c.close();
    }
    const reads = (await readFile(logfile, "utf8"))
      .split("\n")
      .filter((l) => / Read id=\d+ offset=/.test(l))
      .map((l) => Number(/count=(0x[0-9a-f]+)/.exec(l)?.[1]));
    // Per mode: 5 MiB in five 1 MiB READs, then 3 MiB + 12 KiB in four (each stops at 1 MiB).
    expect(reads.length).toBe(3 * 9);
    expect(Math.max(...reads)).toBe(MiB);
  });

  it("a server killed mid-transfer gives a retryable 'unavailable' error with the resume offset", async () => {
    const dir = await peers.tempDir();
    const s = join(dir, "kill.sock");
    const srv = await peers.nbdkit({
      socket: s,
      filters: ["delay"],
      plugin: "pattern",
      params: ["64M", "delay-read=20ms"],
    });
    const c = await NbdClient.connect({ target: { path: s } });
    let delivered = 0;
    const e = await (async () => {
      for await (const p of readExtents(c, [{ offset: 0, length: 64 * MiB }], {
        requestSize: 256 * 1024,
        depth: 4,
      })) {
        expect(p.offset).toBe(delivered);
        delivered += p.data.length;
        if (delivered === 2 * MiB) process.kill(srv.pid, "SIGKILL");
      }
    })().catch((x) => x);
    expect(isCairnError(e)).toBe(true);
    expect(e.code).toBe("unavailable");
    expect(e.transient).toBe(true);
    expect(e.details.resumeFrom).toBe(delivered);
    expect(delivered).toBeGreaterThanOrEqual(2 * MiB);
    expect(delivered).toBeLessThan(64 * MiB);
    c.destroy();
  });
});
