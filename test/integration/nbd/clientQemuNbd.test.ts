import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { BASE_ALLOCATION, NBD_STATE_DIRTY } from "../../../shared/src/nbd/constants.js";
import { intersectDirtyWithAllocation } from "../../../shared/src/nbd/extents/intersectDirtyWithAllocation.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { readExtents } from "../../../shared/src/nbd/readExtents.js";
import { nbdinfoMap, unixUri } from "./support/nbdinfoMap.js";
import { Peers, run } from "./support/processes.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const peers = new Peers();
afterAll(() => peers.stopAll());

describe("client vs qemu-nbd, raw image", () => {
  let dir: string;
  let sock: string;
  let image: Buffer;

  beforeAll(async () => {
    dir = await peers.tempDir();
    sock = join(dir, "raw.sock");
    // 48 MiB: random data, a zero gap, more random data, and an odd-sized tail.
    image = Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(20 * MiB), randomBytes(23 * MiB - 4096 + 512)]);
    await writeFile(join(dir, "disk.raw"), image);
    await peers.qemuNbd({ image: join(dir, "disk.raw"), format: "raw", socket: sock, readOnly: true });
  });

  it("negotiates GO with block sizes and reads exact bytes at arbitrary offsets", async () => {
    const c = await NbdClient.connect({ target: { path: sock }, metaContexts: [BASE_ALLOCATION] });
    try {
      expect(c.size).toBe(image.length);
      expect(c.readOnly).toBe(true);
      expect(c.maxPayload).toBe(32 * MiB);
      for (const [off, len] of [
        [0, 512],
        [4095, 70_000],
        [5 * MiB - 100, 200],
        [image.length - 512, 512],
        [7 * MiB, 32 * MiB],
      ] as const) {
        expect((await c.read(off, len)).equals(image.subarray(off, off + len))).toBe(true);
      }
    } finally {
      await c.close();
    }
  });

  it("pipelined readExtents returns the whole disk in order, byte-identical", async () => {
    const c = await NbdClient.connect({ target: { path: sock }, connections: 2 });
    try {
      expect(c.connectionCount).toBe(c.canMultiConn ? 2 : 1);
      const got = Buffer.alloc(image.length);
      let expectOffset = 0;
      let progress = 0;
      for await (const p of readExtents(c, [{ offset: 0, length: image.length }], {
        requestSize: 192 * 1024,
        depth: 8,
        chunkSize: 1000 * 1000,
        onProgress: (n) => {
          progress = n;
        },
      })) {
        expect(p.offset).toBe(expectOffset);
        // Pieces never straddle a chunk boundary.
        expect(Math.floor(p.offset / 1e6)).toBe(Math.floor((p.offset + p.data.length - 1) / 1e6));
        p.data.copy(got, p.offset);
        expectOffset += p.data.length;
      }
      expect(progress).toBe(image.length);
      expect(got.equals(image)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("readExtents with recycled buffers over several connections is byte-identical too", async () => {
    const c = await NbdClient.connect({ target: { path: sock }, connections: 3 });
    try {
      const got = Buffer.alloc(image.length);
      const seen = new Set<ArrayBuffer>();
      let n = 0;
      for await (const p of readExtents(c, [{ offset: 0, length: image.length }], {
        reuseBuffers: true,
        depth: 4,
        adaptive: false, // a fixed request size: the recycling bound below is exact
      })) {
        p.data.copy(got, p.offset);
        seen.add(p.data.buffer as ArrayBuffer);
        n++;
      }
      expect(got.equals(image)).toBe(true);
      expect(seen.size).toBeLessThanOrEqual(5); // depth + the one the consumer holds
      expect(n).toBeGreaterThan(100);
    } finally {
      await c.close();
    }
  });

  it("base:allocation map equals nbdinfo --map", async () => {
    const c = await NbdClient.connect({ target: { path: sock }, metaContexts: [BASE_ALLOCATION] });
    try {
      const ours = await c.mapExtents(BASE_ALLOCATION);
      expect(ours).toEqual(await nbdinfoMap(unixUri(sock), BASE_ALLOCATION));
    } finally {
      await c.close();
    }
  });

  it("lists exports and meta contexts", async () => {
    const exports = await NbdClient.listExports({ target: { path: sock } });
    expect(exports.map((e) => e.name)).toEqual([""]);
    const ctx = await NbdClient.listMetaContexts({ target: { path: sock } }, [BASE_ALLOCATION]);
    expect(ctx).toContain(BASE_ALLOCATION);
  });

  it("rejects writes on a read-only export and an unknown export name", async () => {
    const c = await NbdClient.connect({ target: { path: sock } });
    await expect(c.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: "permission-denied" });
    await c.close();
    const err = await NbdClient.connect({ target: { path: sock }, exportName: "nope" }).catch((e) => e);
    expect(isCairnError(err)).toBe(true);
    expect(err.code).toBe("not-found");
  });
});

describe("client vs qemu-nbd, qcow2 > 4 GiB with a persistent dirty bitmap", () => {
  const size = 6 * GiB;
  let sock: string;
  let img: string;

  beforeAll(async () => {
    const dir = await peers.tempDir();
    img = join(dir, "disk.qcow2");
    sock = join(dir, "q.sock");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", img, String(size)]);
    // Data written before the bitmap exists is allocated but not dirty.
    await run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x11 0 2M", img]);
    await run("qemu-img", ["bitmap", "--add", img, "b0"]);
    await run("qemu-io", [
      "-f",
      "qcow2",
      "-c",
      "write -P 0xab 1M 3M",
      "-c",
      "write -z 100M 2M",
      "-c",
      "write -P 0xcd 5G 1M",
      "-c",
      "write -P 0xef 6143M 1M",
      img,
    ]);
    await peers.qemuNbd({ image: img, format: "qcow2", socket: sock, readOnly: true, bitmaps: ["b0"] });
  });

  it("dirty map equals nbdinfo --map=qemu:dirty-bitmap:b0 and spans > 4 GiB", async () => {
    const ctx = "qemu:dirty-bitmap:b0";
    const c = await NbdClient.connect({ target: { path: sock }, metaContexts: [BASE_ALLOCATION, ctx] });
    try {
      expect(c.size).toBe(size);
      const dirty = await c.mapExtents(ctx);
      expect(dirty).toEqual(await nbdinfoMap(unixUri(sock), ctx));
      expect(dirty.at(-1)!.offset + dirty.at(-1)!.length).toBe(size);
      const dirtyRanges = dirty.filter((e) => e.flags & NBD_STATE_DIRTY).map((e) => [e.offset, e.length]);
      expect(dirtyRanges).toEqual([
        [1 * MiB, 3 * MiB], // granularity 64 KiB: 1M..4M exactly
        [100 * MiB, 2 * MiB],
        [5 * GiB, 1 * MiB],
        [6143 * MiB, 1 * MiB],
      ]);
      const alloc = await c.mapExtents(BASE_ALLOCATION);
      expect(alloc).toEqual(await nbdinfoMap(unixUri(sock), BASE_ALLOCATION));

      const plan = intersectDirtyWithAllocation(dirty, alloc);
      expect(plan).toEqual([
        { offset: 1 * MiB, length: 3 * MiB, kind: "data" },
        { offset: 100 * MiB, length: 2 * MiB, kind: "zero" },
        { offset: 5 * GiB, length: 1 * MiB, kind: "data" },
        { offset: 6143 * MiB, length: 1 * MiB, kind: "data" },
      ]);
      const want = new Map([
        [1 * MiB, 0xab],
        [5 * GiB, 0xcd],
        [6143 * MiB, 0xef],
      ]);
      let bytes = 0;
      for await (const p of readExtents(
        c,
        plan.filter((e) => e.kind === "data"),
        { chunkSize: 4 * MiB },
      )) {
        const base = [...want.keys()].filter((k) => k <= p.offset).at(-1)!;
        expect(p.data.equals(Buffer.alloc(p.data.length, want.get(base)!))).toBe(true);
        bytes += p.data.length;
      }
      expect(bytes).toBe(5 * MiB);
    } finally {
      await c.close();
    }
  });

  it("an unknown bitmap is not negotiated and using it fails clearly", async () => {
    const c = await NbdClient.connect({
      target: { path: sock },
      metaContexts: [BASE_ALLOCATION, "qemu:dirty-bitmap:nope"],
    });
    try {
      expect([...c.metaContexts.keys()]).toEqual([BASE_ALLOCATION]);
      await expect(c.mapExtents("qemu:dirty-bitmap:nope")).rejects.toMatchObject({
        code: "failed-precondition",
      });
    } finally {
      await c.close();
    }
  });
});

describe("client writes to qemu-nbd (qcow2, read-write)", () => {
  it("write, write-zeroes, trim and flush land in the image", async () => {
    const dir = await peers.tempDir();
    const img = join(dir, "rw.qcow2");
    const sock = join(dir, "rw.sock");
    const size = 16 * MiB;
    await run("qemu-img", ["create", "-q", "-f", "qcow2", img, String(size)]);
    await run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x77 0 16M", img]);
    const srv = await peers.qemuNbd({
      image: img,
      format: "qcow2",
      socket: sock,
      extra: ["--discard=unmap"],
    });
    const model = Buffer.alloc(size, 0x77);
    const c = await NbdClient.connect({ target: { path: sock } });
    const a = randomBytes(3 * MiB + 4096);
    await Promise.all([c.write(65536, a), c.writeZeroes(8 * MiB, MiB), c.trim(12 * MiB, 2 * MiB)]);
    a.copy(model, 65536);
    model.fill(0, 8 * MiB, 9 * MiB);
    model.fill(0, 12 * MiB, 14 * MiB); // qcow2 trim reads back as zeros
    await c.flush();
    expect((await c.read(0, size)).equals(model)).toBe(true);
    await c.close();
    await peers.stop(srv);
    const out = join(dir, "out.raw");
    await run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", img, out]);
    expect((await readFile(out)).equals(model)).toBe(true);
  });
});
