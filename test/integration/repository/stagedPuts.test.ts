import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { alignedSharedMemory } from "../../../shared/src/repository/chunks/SharedChunk.js";
import { putParts } from "../../../shared/src/repository/ports/ObjectStore.js";

/** Bytes of `path` in the page cache (util-linux fincore). */
async function cachedBytes(path: string): Promise<number> {
  const r = await execa("fincore", ["--bytes", "--noheadings", "--output", "RES", path]);
  return Number(r.stdout.trim());
}

/** A chunk-sized frame in page-aligned shared memory, as SharedChunk makes them. */
function alignedFrame(length: number): Buffer {
  const b = Buffer.from(alignedSharedMemory(length), 0, length);
  randomBytes(length).copy(b);
  return b;
}

describe("LocalObjectStore staged puts", () => {
  let dir = "";
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("a staged object never shows before commit, not even to another process's view after a crash", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    await s.put("chunks/aa/x", randomBytes(5000), { staged: true });
    expect(await s.head("chunks/aa/x")).toBeUndefined();
    // "Crash": a new store over the same directory, the first never commits.
    const after = new LocalObjectStore(dir);
    expect(await after.head("chunks/aa/x")).toBeUndefined();
    const listed: string[] = [];
    for await (const o of after.list("")) listed.push(o.key);
    expect(listed).toEqual([]);
    // Its temporary is there, invisible, and swept as a temporary.
    expect((await readdir(join(dir, "chunks", "aa"))).some((f) => f.startsWith(".x.tmp-"))).toBe(true);
    expect(await after.sweepTemporaries(0)).toBe(1);
  });

  it("commitStaged makes staged objects visible; a later staged put needs its own commit", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    const a = randomBytes(7000);
    await s.put("a", a, { staged: true });
    await s.commitStaged();
    expect((await s.get("a")).equals(a)).toBe(true);
    await s.put("b", a, { staged: true });
    expect(await s.head("b")).toBeUndefined();
    await s.commitStaged();
    expect((await s.head("b"))?.size).toBe(7000);
  });

  it("what a background writeback made durable shows before the commit; what came after waits for it", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir, { writebackEveryBytes: 10_000 }); // a writeback once 10 kB are staged
    const [a, b, c] = [randomBytes(6000), randomBytes(6000), randomBytes(6000)];
    await s.put("chunks/aa/a", a, { staged: true });
    expect(await s.head("chunks/aa/a")).toBeUndefined();
    await s.put("chunks/aa/b", b, { staged: true }); // 12 kB: the writeback syncs, then renames a and b
    await vi.waitFor(async () => expect(await s.head("chunks/aa/b")).toBeDefined(), { timeout: 10_000 });
    expect((await s.get("chunks/aa/a")).equals(a)).toBe(true);
    await s.put("chunks/aa/c", c, { staged: true }); // written after that sync: stays a temporary
    await new Promise((r) => setTimeout(r, 200));
    expect(await s.head("chunks/aa/c")).toBeUndefined();
    expect(await new LocalObjectStore(dir).head("chunks/aa/c")).toBeUndefined();
    await s.commitStaged();
    expect((await s.get("chunks/aa/c")).equals(c)).toBe(true);
    expect((await readdir(join(dir, "chunks", "aa"))).sort()).toEqual(["a", "b", "c"]);
  });

  it("only bytes written through the page cache start a background writeback; O_DIRECT ones leave nothing to write back", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir, { writebackEveryBytes: 10_000 });
    const direct = alignedFrame(256 * 1024);
    await s.put("packs/aa/direct", direct, { staged: true }); // 256 KiB, O_DIRECT: no writeback
    await new Promise((r) => setTimeout(r, 300));
    expect(await s.head("packs/aa/direct")).toBeUndefined();
    await s.put("packs/aa/cached", randomBytes(12_000), { staged: true }); // 12 kB through the cache
    await vi.waitFor(async () => expect(await s.head("packs/aa/cached")).toBeDefined(), { timeout: 10_000 });
    expect((await s.get("packs/aa/direct")).equals(direct)).toBe(true);
    expect(await s.head("packs/aa/direct")).toBeDefined();
  });

  it("discardStaged deletes its owner's temporaries from disk, after a writeback running beside it", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir, { writebackEveryBytes: 10_000 });
    const mine = {};
    const theirs = {};
    await s.put("chunks/aa/a", randomBytes(6000), { staged: true, owner: mine });
    await s.put("chunks/aa/b", randomBytes(6000), { staged: true, owner: mine }); // starts a writeback
    // Staged while that writeback runs: it is not in the writeback's batch and stays a temporary.
    await s.put("chunks/aa/c", randomBytes(6000), { staged: true, owner: mine });
    await s.put("chunks/aa/d", randomBytes(100), { staged: true, owner: theirs });
    await s.discardStaged(mine);
    // a and b were made durable and shown by the writeback (GC's now); c is gone; d still waits.
    expect((await readdir(join(dir, "chunks", "aa"))).filter((f) => f.includes(".tmp-"))).toEqual([
      expect.stringMatching(/^\.d\.tmp-/),
    ]);
    await s.commitStaged();
    expect((await readdir(join(dir, "chunks", "aa"))).sort()).toEqual(["a", "b", "d"]);
  });

  it("a page-aligned staged chunk bypasses the page cache (O_DIRECT) but its last partial page; it round-trips", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    const framed = alignedFrame(256 * 1024 + 2);
    await s.put("chunks/ab/direct", framed, { staged: true });
    const plain = Buffer.from(framed); // an ordinary (unaligned) buffer goes through the cache
    await s.put("chunks/ab/buffered", plain, { staged: true });
    await s.commitStaged();
    expect(await cachedBytes(join(dir, "chunks/ab/direct"))).toBeLessThanOrEqual(4096);
    expect(await cachedBytes(join(dir, "chunks/ab/buffered"))).toBeGreaterThan(256 * 1024);
    expect((await s.get("chunks/ab/direct")).equals(framed)).toBe(true);
    expect((await s.get("chunks/ab/buffered")).equals(framed)).toBe(true);
  });

  it("a staged pack of page-aligned frames bypasses the page cache in one writev, others use it; this store reads it before the commit", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    const aligned = [alignedFrame(256 * 1024), alignedFrame(128 * 1024), alignedFrame(64 * 1024 + 10)];
    const unaligned = [randomBytes(100_001), randomBytes(77_777), randomBytes(3)];
    await putParts(s, "packs/ab/aligned", aligned, { staged: true });
    await putParts(s, "packs/ab/copied", unaligned, { staged: true });
    // Not shown to head, list or other instances before the commit; the writer's own get reads it.
    expect(await s.head("packs/ab/aligned")).toBeUndefined();
    await expect(new LocalObjectStore(dir).get("packs/ab/aligned")).rejects.toMatchObject({
      code: "not-found",
    });
    expect(
      (await s.get("packs/ab/aligned", { range: { offset: 256 * 1024, length: 10 } })).equals(
        aligned[1]!.subarray(0, 10),
      ),
    ).toBe(true);
    await s.commitStaged();
    expect(await cachedBytes(join(dir, "packs/ab/aligned"))).toBeLessThanOrEqual(4096);
    // Compressed frames are not page-aligned: that pack goes through the page cache, as unaligned
    // chunks always did (a restore soon after reads it from there).
    expect(await cachedBytes(join(dir, "packs/ab/copied"))).toBeGreaterThan(100_000);
    expect((await s.get("packs/ab/aligned")).equals(Buffer.concat(aligned))).toBe(true);
    expect((await s.get("packs/ab/copied")).equals(Buffer.concat(unaligned))).toBe(true);
  });

  it("where the filesystem refuses O_DIRECT (tmpfs) aligned staged puts fall back to the page cache", async () => {
    dir = await mkdtemp(join("/dev/shm", "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    const frames = [alignedFrame(128 * 1024), alignedFrame(64 * 1024 + 2)];
    await s.put("chunks/cd/one", frames[0]!, { staged: true });
    await s.put("chunks/cd/two", frames[1]!, { staged: true });
    await s.commitStaged();
    expect((await s.get("chunks/cd/one")).equals(frames[0]!)).toBe(true);
    expect((await s.get("chunks/cd/two")).equals(frames[1]!)).toBe(true);
  });
});
