import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { ChunkWorkerPool } from "../../../shared/src/repository/chunks/ChunkWorkerPool.js";
import { SharedChunk } from "../../../shared/src/repository/chunks/SharedChunk.js";
import { Repository } from "../../../shared/src/repository/Repository.js";

const KiB = 1024;
const CS = 64 * KiB;

function vmDisk(size: number, seed = 1): Buffer {
  // zeros, random and text blocks, like a VM disk
  const b = Buffer.alloc(size);
  let s = seed;
  for (let off = 0; off < size; off += 16 * KiB) {
    s = (s * 1103515245 + 12345) >>> 0;
    const kind = s % 3;
    const n = Math.min(16 * KiB, size - off);
    if (kind === 1) randomBytes(n).copy(b, off);
    else if (kind === 2) b.write("the quick brown fox jumps over the lazy dog ".repeat(400), off, n);
  }
  return b;
}

const vm = { uuid: "00000000-0000-0000-0000-000000000001", name: "vm1" };
const seal = { domainXml: "<domain/>", consistency: { kind: "quiesced" as const } };
const open: Repository[] = [];
afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
});

async function repo(opts: { passphrase?: string } = {}): Promise<Repository> {
  const r = await Repository.init(new MemoryObjectStore(), {
    chunkSize: CS,
    workers: 2,
    scryptN: 1024,
    ...opts,
  });
  open.push(r);
  return r;
}

describe("restore points", () => {
  it("writeChunk: whole chunks read into shared buffers are stored from them; other pieces are copied", async () => {
    const r = await repo();
    const disk = vmDisk(10 * CS + 123);
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vda", virtualSize: disk.length, sourceFormat: "raw", kind: "full" });
    const viaChunk = async (off: number, n: number) => {
      const c = w.acquireChunk(CS);
      disk.copy(c.plain, 0, off, off + n);
      await d.writeChunk(off, c, n);
    };
    await d.write(3 * CS + 10, disk.subarray(3 * CS + 10, 3 * CS + 20)); // chunk 3 is open
    for (let i = 0; i < 10; i++) await viaChunk(i * CS, CS); // adopted, but chunk 3 is copied
    await viaChunk(10 * CS, 123); // the short last chunk: copied
    await viaChunk(5 * CS, CS); // a rewrite of an adopted chunk waits for it
    await d.finish();
    const m = await w.seal(seal);
    expect(m.disks[0]!.stats.bytesRead).toBe(11 * CS + 123 + 10);
    const rd = await r.openDisk(m.id, "vda");
    expect((await rd.read(0, disk.length)).equals(disk)).toBe(true);
    // Every buffer came back: the pool hands out the first slab's buffers again, never a new slab's.
    const perSlab = Math.floor(ChunkWorkerPool.SLAB_BYTES / SharedChunk.strideFor(CS));
    const again = new Set(Array.from({ length: 8 }, () => r.pool.acquireShared(CS).sid));
    expect(Math.max(...again)).toBeLessThanOrEqual(perSlab);
  });

  it("round-trips a full backup written in unaligned, out-of-order extents", async () => {
    const r = await repo();
    const disk = vmDisk(1000 * KiB + 123);
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: disk.length,
      sourceFormat: "qcow2",
      kind: "full",
    });
    const pieces: Array<[number, number]> = [];
    for (let off = 0; off < disk.length; off += 40 * KiB + 7)
      pieces.push([off, Math.min(40 * KiB + 7, disk.length - off)]);
    pieces.reverse();
    for (const [off, n] of pieces) await d.write(off, disk.subarray(off, off + n));
    await d.finish();
    const m = await w.seal(seal);
    const rd = await r.openDisk(m.id, "vda");
    expect((await rd.read(0, disk.length)).equals(disk)).toBe(true);
    expect((await rd.read(12345, 99999)).equals(disk.subarray(12345, 12345 + 99999))).toBe(true);
    expect((await r.listSnapshots()).map((s) => s.id)).toEqual([m.id]);
  });

  it("incremental writes only new chunks and is logically full", async () => {
    const r = await repo({ passphrase: "pw" });
    const disk = vmDisk(2 * 1024 * KiB);
    const w1 = await r.beginSnapshot({ vm });
    const d1 = await w1.addDisk({
      target: "vda",
      virtualSize: disk.length,
      sourceFormat: "qcow2",
      kind: "full",
    });
    await d1.write(0, disk);
    await d1.finish();
    const m1 = await w1.seal(seal);
    // change 10 KiB at an unaligned offset and zero one chunk
    const changed = Buffer.from(disk);
    randomBytes(10 * KiB).copy(changed, 300 * KiB + 5);
    changed.fill(0, 8 * CS, 9 * CS);
    const w2 = await r.beginSnapshot({ vm });
    const d2 = await w2.addDisk({
      target: "vda",
      virtualSize: disk.length,
      sourceFormat: "qcow2",
      kind: "incremental",
      parent: { snapshotId: m1.id },
    });
    await d2.write(300 * KiB + 5, changed.subarray(300 * KiB + 5, 310 * KiB + 5));
    await d2.writeZeroes(8 * CS, CS);
    const e2 = await d2.finish();
    const m2 = await w2.seal(seal);
    expect(e2.stats.chunksNew).toBeLessThanOrEqual(2);
    expect(e2.stats.bytesRead).toBe(10 * KiB);
    expect((await (await r.openDisk(m2.id, "vda")).read(0, disk.length)).equals(changed)).toBe(true);
    expect((await (await r.openDisk(m1.id, "vda")).read(0, disk.length)).equals(disk)).toBe(true);
  });
});
