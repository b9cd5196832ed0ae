import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { PACKS_PREFIX } from "../../../shared/src/repository/layout.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import { backup, CS, closesAfterEach, newRepo, vmDisk, whereStored } from "./helpers.js";

const track = closesAfterEach();
const sparseOnly = { minUnusedFraction: 0.2, smallPackBytes: 0 };

async function packs(s: MemoryObjectStore): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for await (const o of s.list(PACKS_PREFIX)) {
    count++;
    bytes += o.size;
  }
  return { count, bytes };
}
async function readAll(r: Repository, id: string, size: number): Promise<Buffer> {
  return (await r.openDisk(id, "vda")).read(0, size);
}
/** d with chunks [from, to) replaced by other data. */
function rewrite(d: Buffer, from: number, to: number, seed: number): Buffer {
  const out = Buffer.from(d);
  vmDisk((to - from) * CS, seed).copy(out, from * CS);
  return out;
}

/**
 * A 16-chunk full, then an incremental that rewrites chunks 0-11: once retention drops the full,
 * its pack holds 4 live chunks of 16.
 */
async function fullThenMostlyRewritten(seed: number) {
  const s = new MemoryObjectStore();
  const r = await track(newRepo(s));
  const d1 = vmDisk(16 * CS, seed);
  const a = await backup(r, d1);
  const d2 = rewrite(d1, 0, 12, seed + 1);
  const b = await backup(r, d2, a.id);
  return { s, r, b, d2 };
}

describe("GC repacks packs that still hold live chunks (format §9)", () => {
  it("a pack whose chunks are mostly unreferenced is rewritten with its live ones; the space comes back", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const d1 = vmDisk(16 * CS, 41);
    const a = await backup(r, d1);
    const d2 = rewrite(d1, 0, 10, 42); // 10 of 16 chunks change: a's pack is mostly dead once a goes
    const b = await backup(r, d2, a.id);
    await pruneSnapshots(r, { keepLast: 1 });
    const before = await packs(s);

    const dry = await collectGarbage(r, { graceMs: -1000, dryRun: true, repack: sparseOnly });
    // a's chunks are in one pack or, when the writer idled, a few: each is mostly dead.
    expect(dry.packsRepacked).toBeGreaterThanOrEqual(1);
    expect(await packs(s)).toEqual(before);

    const rep = await collectGarbage(r, { graceMs: -1000, repack: sparseOnly });
    expect(rep.packsRepacked).toBe(dry.packsRepacked);
    expect(rep.packBytesRepacked).toBeGreaterThan(0);
    expect(rep.packBytesUnreferenced).toBe(0);
    expect(rep.packBytesFreed).toBe(dry.packBytesFreed);
    const after = await packs(s);
    expect(after.count).toBeLessThanOrEqual(before.count);
    expect(before.bytes - after.bytes).toBe(rep.packBytesFreed);
    expect(rep.packBytesFreed).toBeGreaterThan(0);
    expect((await readAll(r, b.id, d2.length)).equals(d2)).toBe(true);
    const fresh = await track(Repository.open(s));
    expect((await readAll(fresh, b.id, d2.length)).equals(d2)).toBe(true);
    expect((await verifyRepository(fresh, { readData: true })).ok).toBe(true);
    // Nothing left to do: the rewritten pack holds only live chunks.
    const idle = await collectGarbage(r, { graceMs: -1000, repack: sparseOnly });
    expect(idle.packsRepacked + idle.packsDeleted).toBe(0);
  });

  it("small packs are merged, once", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const disks = [0, 1, 2, 3].map((i) => vmDisk(4 * CS, 50 + i));
    const ms = [];
    for (const d of disks) ms.push(await backup(r, d));
    const before = (await packs(s)).count;
    expect(before).toBeGreaterThanOrEqual(4);
    const rep = await collectGarbage(r, { graceMs: -1000 });
    expect(rep.packsRepacked).toBe(before);
    expect((await packs(s)).count).toBe(1);
    for (const [i, m] of ms.entries())
      expect((await readAll(r, m.id, disks[i]!.length)).equals(disks[i]!)).toBe(true);
    expect((await verifyRepository(r, { readData: true })).ok).toBe(true);
    const idle = await collectGarbage(r, { graceMs: -1000 });
    expect(idle.packsRepacked).toBe(0);
    expect((await packs(s)).count).toBe(1);
  });

  it("packs inside the grace period are never rewritten", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    for (let i = 0; i < 3; i++) await backup(r, vmDisk(4 * CS, 60 + i));
    const before = await packs(s);
    const rep = await collectGarbage(r); // default 1 h grace
    expect(rep.packsRepacked).toBe(0);
    expect(await packs(s)).toEqual(before);
  });

  it("a reader that loaded the pack indexes before a repack finds the moved chunks", async () => {
    const { s, r, b, d2 } = await fullThenMostlyRewritten(70);
    const reader = await track(Repository.open(s));
    expect((await readAll(reader, b.id, d2.length)).equals(d2)).toBe(true); // its locations are cached now
    const oldPack = (await whereStored(reader, (await reader.openDisk(b.id, "vda")).index.get(15)!)).key;
    await pruneSnapshots(r, { keepLast: 1 });
    const rep = await collectGarbage(r, { graceMs: -1000, repack: sparseOnly });
    expect(rep.packsRepacked).toBeGreaterThanOrEqual(1);
    expect(await s.head(oldPack)).toBeUndefined();
    expect((await readAll(reader, b.id, d2.length)).equals(d2)).toBe(true);
  });

  it("a damaged live frame stops GC before anything is deleted", async () => {
    const { s, r } = await fullThenMostlyRewritten(80);
    await pruneSnapshots(r, { keepLast: 1 });
    // Chunk 15 stayed in a's pack and is still live: damage it.
    const at = await whereStored(
      r,
      (await r.openDisk((await r.listSnapshots())[0]!.id, "vda")).index.get(15)!,
    );
    s.tamper(at.key, (buf) => {
      buf[at.offset + at.length - 20]! ^= 0xff;
    });
    const before = await packs(s);
    const e = await collectGarbage(r, { graceMs: -1000, repack: sparseOnly }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(
      /GC stopped before deleting anything: chunk [0-9a-f]{64} in pack .* is damaged/,
    );
    // Only the copies it had written are new; every old pack is still there.
    const keys = new Set<string>();
    for await (const o of s.list(PACKS_PREFIX)) keys.add(o.key);
    expect(keys.has(at.key)).toBe(true);
    expect((await packs(s)).count).toBeGreaterThanOrEqual(before.count);
  });
});
