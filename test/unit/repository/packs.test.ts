import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { sweepPacks } from "../../../shared/src/repository/gc/sweepPacks.js";
import { CHUNKS_PREFIX, PACK_INDEXES_PREFIX, PACKS_PREFIX } from "../../../shared/src/repository/layout.js";
import { PACK_IDLE_FLUSH_MS, PackWriter } from "../../../shared/src/repository/packs/PackWriter.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { repositoryStats } from "../../../shared/src/repository/stats/repositoryStats.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import { backup, CS, closesAfterEach, newRepo, sealOpts, storedChunkIds, vm, vmDisk } from "./helpers.js";

const track = closesAfterEach();
async function count(store: MemoryObjectStore, prefix: string): Promise<number> {
  let n = 0;
  for await (const _ of store.list(prefix)) n++;
  return n;
}
async function readAll(r: Repository, id: string, size: number): Promise<Buffer> {
  const d = await r.openDisk(id, "vda");
  return d.read(0, size);
}

describe("packs (format version 2)", () => {
  it("a new repository is version 2: chunks go into packs with one pack index per backup, none loose", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    expect(r.config.version).toBe(2);
    const data = randomBytes(200 * CS); // 12.5 MiB that does not compress: 4 packs of ~4 MiB
    const m = await backup(r, data);
    expect(await count(s, CHUNKS_PREFIX)).toBe(0);
    expect(await count(s, PACKS_PREFIX)).toBeGreaterThanOrEqual(3);
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(1);
    expect((await readAll(r, m.id, data.length)).equals(data)).toBe(true);
    // A fresh reader finds every chunk through the pack index alone.
    const again = await track(Repository.open(s));
    expect((await readAll(again, m.id, data.length)).equals(data)).toBe(true);
    expect((await verifyRepository(again, { readData: true })).ok).toBe(true);
    const st = await repositoryStats(again);
    expect(st.packObjects).toBe(await count(s, PACKS_PREFIX));
    expect(st.storedBytes).toBeGreaterThan(0);
  });

  it("deduplicates through the pack indexes, also against another process's backups", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const data = vmDisk(40 * CS, 2);
    const a = await backup(r, data);
    const other = await track(Repository.open(s));
    const b = await backup(other, data);
    expect(b.stats.bytesNew).toBe(0);
    expect(a.stats.bytesNew).toBeGreaterThan(0);
    // And back: the first process sees nothing new in the second's (empty) pack index.
    const c = await backup(r, data);
    expect(c.stats.bytesNew).toBe(0);
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(1);
  });

  it("a chunk rewritten after it was evicted reads its own unsealed pack as the base", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const size = 40 * CS;
    const base = vmDisk(size, 3);
    const full = await backup(r, base);
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: size,
      sourceFormat: "qcow2",
      kind: "incremental",
      parent: { snapshotId: full.id },
      maxOpenChunks: 1,
    });
    const expected = Buffer.from(base);
    const put = async (offset: number, n: number, fill: number) => {
      const b = Buffer.alloc(n, fill);
      b.copy(expected, offset);
      await d.write(offset, b);
    };
    await put(10, 100, 0xa1); // chunk 0, partial
    await put(CS + 5, 50, 0xa2); // chunk 1 evicts chunk 0: processed into this backup's pack
    await put(2 * CS + 5, 50, 0xa3); // evicts chunk 1
    await new Promise((res) => setTimeout(res, 4 * PACK_IDLE_FLUSH_MS)); // its pack is written
    await put(300, 10, 0xa4); // chunk 0 again: its base is the version this backup wrote
    await d.finish();
    const m = await w.seal(sealOpts);
    expect((await readAll(r, m.id, size)).equals(expected)).toBe(true);
  });

  it("GC deletes packs without live chunks and orphan packs, merges the indexes, keeps every snapshot whole", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const d1 = vmDisk(60 * CS, 4);
    const d2 = vmDisk(60 * CS, 5);
    const a = await backup(r, d1);
    const b = await backup(r, d2);
    // A backup that died before sealing leaves a pack no index lists.
    const w = await r.beginSnapshot({ vm });
    const dw = await w.addDisk({ target: "vda", virtualSize: 20 * CS, sourceFormat: "raw", kind: "full" });
    await dw.write(0, vmDisk(20 * CS, 6));
    await dw.finish();
    await w.abort(); // settles the pack writes; the memory store keeps what was staged
    const packsBefore = await count(s, PACKS_PREFIX);
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(2);

    const young = await collectGarbage(r); // 1 h grace: nothing goes
    expect(young.packsDeleted).toBe(0);
    expect(await count(s, PACKS_PREFIX)).toBe(packsBefore);

    await pruneSnapshots(r, { keepLast: 1 });
    const dry = await collectGarbage(r, { graceMs: -1000, dryRun: true });
    expect(dry.packsDeleted).toBeGreaterThan(0);
    expect(await count(s, PACKS_PREFIX)).toBe(packsBefore);

    const rep = await collectGarbage(r, { graceMs: -1000 });
    expect(rep.packsDeleted).toBeGreaterThan(0);
    expect(rep.packBytesFreed).toBeGreaterThan(0);
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(1);
    // Only b's packs are left: a's and the orphan's are gone, and the merged index lists each.
    const left = await count(s, PACKS_PREFIX);
    expect(left).toBeLessThan(packsBefore);
    let indexed = 0;
    for await (const o of s.list(PACK_INDEXES_PREFIX))
      indexed += (await r.readPackIndex(o.key.slice(PACK_INDEXES_PREFIX.length))).length;
    expect(left).toBe(indexed);
    expect((await verifyRepository(r, { readData: true })).ok).toBe(true);
    expect((await readAll(r, b.id, d2.length)).equals(d2)).toBe(true);
    const fresh = await track(Repository.open(s));
    expect((await readAll(fresh, b.id, d2.length)).equals(d2)).toBe(true);
    // The long-lived handle noticed the merge: a's data is new again, not "deduplicated" into a
    // pack GC deleted.
    const again = await backup(r, d1);
    expect(again.stats.bytesNew).toBe(d1.length);
    expect((await readAll(fresh, again.id, d1.length)).equals(d1)).toBe(true);
    expect(a.id).not.toBe(again.id);
    // A second GC with nothing to do changes nothing.
    const idle = await collectGarbage(r, { graceMs: -1000 });
    expect(idle.packsDeleted).toBe(0);
  });

  it("with repacking off, a pack with some live chunks is kept whole and its unreferenced bytes are reported", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const d1 = vmDisk(8 * CS, 7);
    const a = await backup(r, d1);
    const d2 = Buffer.from(d1);
    vmDisk(CS, 8).copy(d2, 0); // chunk 0 changes, the rest dedups into a's pack
    const b = await backup(r, d2, a.id);
    await pruneSnapshots(r, { keepLast: 1 });
    const rep = await collectGarbage(r, { graceMs: -1000, repack: false });
    expect(rep.packsDeleted).toBe(0);
    expect(rep.packsRepacked).toBe(0);
    expect(rep.packBytesUnreferenced).toBeGreaterThan(0);
    expect((await readAll(r, b.id, d2.length)).equals(d2)).toBe(true);
    expect((await verifyRepository(r, { readData: true })).ok).toBe(true);
  });

  it("verify names a missing pack and a pack index that does not parse", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const m = await backup(r, vmDisk(4 * CS, 9));
    for await (const o of s.list(PACKS_PREFIX)) await s.delete(o.key);
    const rep = await verifyRepository(r);
    expect(rep.problems.some((p) => p.kind === "missing-chunk" && p.snapshotId === m.id)).toBe(true);
    for await (const o of s.list(PACK_INDEXES_PREFIX)) {
      s.tamper(o.key, (b) => {
        b[b.length - 1]! ^= 1;
      });
    }
    const rep2 = await verifyRepository(await track(Repository.open(s)));
    expect(rep2.problems.some((p) => p.kind === "pack-index")).toBe(true);
    // GC refuses to guess which packs are live.
    const e = await collectGarbage(r, { graceMs: -1000 }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/pack index .* is unreadable/);
  });

  it("a version-1 repository keeps one object per chunk and stays version 1", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s, undefined, 1));
    const data = vmDisk(20 * CS, 10);
    const m = await backup(r, data);
    expect(await count(s, PACKS_PREFIX)).toBe(0);
    expect(await count(s, CHUNKS_PREFIX)).toBe(m.disks[0]!.stats.chunksNew);
    const again = await track(Repository.open(s));
    expect(again.config.version).toBe(1);
    const next = vmDisk(20 * CS, 11);
    const inc = await backup(again, next, m.id);
    expect(await count(s, PACKS_PREFIX)).toBe(0);
    expect((await readAll(again, inc.id, 20 * CS)).equals(next)).toBe(true);
  });

  it("a big backup writes a pack index per PACKS_PER_INDEX packs, never one huge one", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const owner = {};
    const written: number[] = [];
    const w = new PackWriter(
      s,
      owner,
      async (records, signal) => {
        written.push(records.length);
        return r.putPackIndex(records, { signal, staged: true, owner });
      },
      1000,
      3,
    );
    const frames = Array.from({ length: 10 }, () => randomBytes(1000));
    await Promise.all(frames.map((f, i) => w.add(`${i}`.padStart(64, "0"), f)));
    const indexes = await w.finish();
    expect(written).toEqual([3, 3, 3, 1]);
    expect(indexes.map((x) => x.records.length)).toEqual([3, 3, 3, 1]);
    for (const [i, f] of frames.entries()) {
      const at = w.locate(`${i}`.padStart(64, "0"))!;
      expect((await s.get(`packs/${at.pack.slice(0, 2)}/${at.pack}`, { range: at })).equals(f)).toBe(true);
    }
  });

  it("GC merges pack indexes into groups and leaves them alone when there is nothing to merge", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    for (let i = 0; i < 4; i++) await backup(r, vmDisk(70 * CS, 30 + i)); // 2 packs each
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(4);
    const packs = await count(s, PACKS_PREFIX);
    const live = new Set(await storedChunkIds(r));
    const first = await sweepPacks(r, live, Date.now() - 3_600_000, { packsPerIndex: 3 });
    expect(first.packIndexesMerged).toBe(4);
    expect(await count(s, PACK_INDEXES_PREFIX)).toBe(Math.ceil(packs / 3));
    const second = await sweepPacks(r, live, Date.now() - 3_600_000, { packsPerIndex: 3 });
    expect(second.packIndexesMerged).toBe(0);
    expect(await count(s, PACKS_PREFIX)).toBe(packs);
    expect((await verifyRepository(await track(Repository.open(s)), { readData: true })).ok).toBe(true);
  });
});
