import { describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { CHUNKS_PREFIX } from "../../../shared/src/repository/layout.js";
import {
  acquireLock,
  breakStaleLocks,
  listLocks,
} from "../../../shared/src/repository/locks/RepositoryLock.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { repositoryStats } from "../../../shared/src/repository/stats/repositoryStats.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import {
  backup,
  CS,
  closesAfterEach,
  KiB,
  newRepo,
  sealOpts,
  storedChunkIds,
  vm,
  vmDisk,
  whereStored,
} from "./helpers.js";

const track = closesAfterEach();

async function keysUnder(store: MemoryObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}
const chunkKeys = (store: MemoryObjectStore) => keysUnder(store, CHUNKS_PREFIX);

describe("init and open", () => {
  it("refuses a newer format version with a clear message", async () => {
    const store = new MemoryObjectStore();
    await (await newRepo(store)).close();
    const cfg = JSON.parse((await store.get("config")).toString());
    await store.put("config", Buffer.from(JSON.stringify({ ...cfg, version: 3 })));
    const e = await Repository.open(store).catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect((e as Error).message).toMatch(/format version 3; this Cairn understands up to 2/);
  });

  it("refuses to init over an existing repository and to open a missing one", async () => {
    const store = new MemoryObjectStore();
    await (await newRepo(store)).close();
    expect(isCairnError(await newRepo(store).catch((x: unknown) => x), "already-exists")).toBe(true);
    expect(
      isCairnError(await Repository.open(new MemoryObjectStore()).catch((x: unknown) => x), "not-found"),
    ).toBe(true);
  });

  it("rejects a chunk size that is not a power of two", async () => {
    const e = await Repository.init(new MemoryObjectStore(), { chunkSize: 100_000 }).catch((x: unknown) => x);
    expect(isCairnError(e, "invalid-argument")).toBe(true);
  });
});

describe("encryption", () => {
  it("needs the passphrase; a wrong one is a clear error; the right one reads back", async () => {
    const store = new MemoryObjectStore();
    const r = await track(newRepo(store, "correct horse"));
    const data = vmDisk(300 * KiB);
    const m = await backup(r, data);
    const none = await Repository.open(store).catch((x: unknown) => x);
    expect(isCairnError(none, "invalid-argument")).toBe(true);
    const wrong = await Repository.open(store, { passphrase: "wrong" }).catch((x: unknown) => x);
    expect(isCairnError(wrong, "permission-denied")).toBe(true);
    expect((wrong as Error).message).toContain("wrong passphrase for repository memory:");
    const r2 = await track(Repository.open(store, { passphrase: "correct horse", workers: 1 }));
    expect((await (await r2.openDisk(m.id, "vda")).read(0, data.length)).equals(data)).toBe(true);
  });

  it.each([1, 2] as const)(
    "chunk ids are keyed: the same data gets different ids in two encrypted repositories (format %i)",
    async (v) => {
      const r1 = await track(newRepo(new MemoryObjectStore(), "a", v));
      const r2 = await track(newRepo(new MemoryObjectStore(), "a", v));
      const data = vmDisk(200 * KiB, 7);
      await backup(r1, data);
      await backup(r2, data);
      const k1 = await storedChunkIds(r1);
      const k2 = await storedChunkIds(r2);
      expect(k1.length).toBeGreaterThan(0);
      expect(k1.filter((k) => k2.includes(k))).toEqual([]);
    },
  );

  it.each([1, 2] as const)("stored chunks do not contain the plaintext (format %i)", async (v) => {
    const s = new MemoryObjectStore();
    const text = Buffer.from("SECRET-PAYLOAD-".repeat(20_000)).subarray(0, CS * 2);
    await backup(await track(newRepo(s, "pw", v)), text);
    const keys = [
      ...(await chunkKeys(s)),
      ...(await keysUnder(s, "packs/")),
      ...(await keysUnder(s, "packindex/")),
    ];
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect((await s.get(k)).includes("SECRET-PAYLOAD")).toBe(false);
  });
});

describe("restore points", () => {
  it.each([1, 2] as const)(
    "never stores all-zero chunks and reports them as holes (format %i)",
    async (v) => {
      const s = new MemoryObjectStore();
      const r = await track(newRepo(s, undefined, v));
      const data = Buffer.alloc(10 * CS);
      data.fill(7, 3 * CS, 4 * CS);
      const m = await backup(r, data);
      expect((await storedChunkIds(r)).length).toBe(1);
      const rd = await r.openDisk(m.id, "vda");
      expect(rd.allocation()).toEqual([
        { offset: 0, length: 3 * CS, zero: true },
        { offset: 3 * CS, length: CS, zero: false },
        { offset: 4 * CS, length: 6 * CS, zero: true },
      ]);
    },
  );

  it("dedups identical data across snapshots and disks", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s));
    const data = vmDisk(512 * KiB, 3);
    const m1 = await backup(r, data);
    const before = (await chunkKeys(s)).length;
    const m2 = await backup(r, data);
    expect((await chunkKeys(s)).length).toBe(before);
    expect(m2.disks[0]!.stats.bytesNew).toBe(0);
    expect(m2.disks[0]!.index).toBe(m1.disks[0]!.index);
    const st = await repositoryStats(r);
    expect(st.dedupRatio).toBeCloseTo(2, 5);
  });

  it("an unsealed snapshot does not exist", async () => {
    const r = await track(newRepo());
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vda", virtualSize: 4 * CS, sourceFormat: "raw", kind: "full" });
    await d.write(0, vmDisk(4 * CS));
    await d.finish();
    await w.abort();
    expect(await r.listSnapshots()).toEqual([]);
    expect(isCairnError(await r.showSnapshot(w.snapshotId).catch((x: unknown) => x), "not-found")).toBe(true);
  });

  it("handles a grown disk in an incremental and a short last chunk", async () => {
    const r = await track(newRepo());
    const a = vmDisk(3 * CS + 100, 5);
    const m1 = await backup(r, a);
    const grown = Buffer.concat([a, vmDisk(2 * CS, 9)]);
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: grown.length,
      sourceFormat: "qcow2",
      kind: "incremental",
      parent: { snapshotId: m1.id },
    });
    await d.write(a.length, grown.subarray(a.length));
    await d.finish();
    const m2 = await w.seal(sealOpts);
    expect((await (await r.openDisk(m2.id, "vda")).read(0, grown.length)).equals(grown)).toBe(true);
  });

  it("rejects extents outside the disk and names the disk", async () => {
    const r = await track(newRepo());
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vdb", virtualSize: CS, sourceFormat: "raw", kind: "full" });
    const e = await d.write(CS - 10, Buffer.alloc(20)).catch((x: unknown) => x);
    expect(isCairnError(e, "invalid-argument")).toBe(true);
    expect((e as Error).message).toContain("disk vdb");
    await w.abort();
  });

  it("an aborted signal stops the writer with 'aborted' and nothing is sealed", async () => {
    const r = await track(newRepo());
    const ac = new AbortController();
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: 8 * CS,
      sourceFormat: "raw",
      kind: "full",
      signal: ac.signal,
    });
    await d.write(0, vmDisk(CS));
    ac.abort();
    expect(isCairnError(await d.write(CS, vmDisk(CS)).catch((x: unknown) => x), "aborted")).toBe(true);
    await w.abort();
    expect(await r.listSnapshots()).toEqual([]);
  });
});

describe("verify", () => {
  it.each([1, 2] as const)(
    "a flipped byte is found by verify --read-data and by a read, naming snapshot, disk and offset (format %i)",
    async (v) => {
      const s = new MemoryObjectStore();
      const r = await track(newRepo(s, undefined, v));
      const data = vmDisk(6 * CS, 11);
      const m = await backup(r, data);
      expect((await verifyRepository(r, { readData: true })).ok).toBe(true);
      const idx = await r.readIndex(m.disks[0]!.index, "t");
      const victim = [...idx.entries()].find((e) => e.id !== undefined)!;
      const at = await whereStored(r, victim.id!);
      s.tamper(at.key, (b) => {
        b[at.offset + at.length - 3]! ^= 0x01;
      });
      expect((await verifyRepository(r)).ok).toBe(true); // structure alone cannot see it
      const rep = await verifyRepository(r, { readData: true });
      expect(rep.ok).toBe(false);
      const p = rep.problems[0]!;
      expect(p).toMatchObject({
        kind: "corrupt-chunk",
        snapshotId: m.id,
        disk: "vda",
        offset: victim.index * CS,
      });
      const rd = await r.openDisk(m.id, "vda");
      const e = await rd.read(victim.index * CS, 10).catch((x: unknown) => x);
      expect(isCairnError(e, "corrupt")).toBe(true);
      expect((e as Error).message).toContain(`snapshot ${m.id} disk vda offset ${victim.index * CS}`);
    },
  );

  it.each([1, 2] as const)("reports a missing chunk (format %i)", async (v) => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s, undefined, v));
    const m = await backup(r, vmDisk(4 * CS, 12));
    const [id] = await storedChunkIds(r);
    await s.delete((await whereStored(r, id!)).key);
    const rep = await verifyRepository(r);
    expect(rep.problems.some((p) => p.kind === "missing-chunk" && p.snapshotId === m.id)).toBe(true);
  });
});

describe("verify and prune", () => {
  it("verify holds a shared lock: a prune cannot delete what it listed, and it waits for a prune", async () => {
    const locksSeen: string[] = [];
    class Watching extends MemoryObjectStore {
      override async *list(prefix: string, options?: { signal?: AbortSignal }) {
        if (prefix === "snapshots/")
          for (const l of await listLocks(this)) locksSeen.push(`${l.kind}:${l.purpose}`);
        yield* super.list(prefix, options);
      }
    }
    const s = new Watching();
    const r = await track(newRepo(s));
    await backup(r, vmDisk(4 * CS, 3));
    expect((await verifyRepository(r)).ok).toBe(true);
    expect(locksSeen).toContain("shared:verify");
    expect(await listLocks(s)).toEqual([]);
    const prune = await acquireLock(s, "exclusive", "prune");
    const e = await verifyRepository(r, { lock: { waitMs: 0 } }).catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect((e as Error).message).toMatch(/exclusive lock by prune/);
    await prune.release();
  });
});

describe("locks", () => {
  it("shared locks coexist; exclusive conflicts both ways; release frees", async () => {
    const s = new MemoryObjectStore();
    const a = await acquireLock(s, "shared", "backup a");
    const b = await acquireLock(s, "shared", "backup b");
    const e = await acquireLock(s, "exclusive", "gc").catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect((e as Error).message).toMatch(/locked: shared lock by backup/);
    await a.release();
    await b.release();
    const x = await acquireLock(s, "exclusive", "gc");
    expect(
      isCairnError(await acquireLock(s, "shared", "backup").catch((y: unknown) => y), "failed-precondition"),
    ).toBe(true);
    await x.release();
    expect(await listLocks(s)).toEqual([]);
  });

  it("a lock of a dead process is detected as stale and broken only explicitly", async () => {
    const s = new MemoryObjectStore();
    const { hostname } = await import("node:os");
    const rec = {
      kind: "exclusive",
      host: hostname(),
      pid: 2 ** 22 + 12345,
      purpose: "gc",
      createdAt: new Date().toISOString(),
      refreshedAt: new Date().toISOString(),
    };
    await s.put("locks/exclusive-dead", Buffer.from(JSON.stringify(rec)));
    const e = await acquireLock(s, "shared", "backup").catch((x: unknown) => x);
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect((e as Error).message).toContain("stale");
    expect((e as { hint?: string }).hint).toMatch(/break stale locks/);
    const broken = await breakStaleLocks(s);
    expect(broken.map((l) => l.key)).toEqual(["locks/exclusive-dead"]);
    await (await acquireLock(s, "shared", "backup")).release();
  });

  it("an old unrefreshed lock is stale", async () => {
    const s = new MemoryObjectStore();
    const old = new Date(Date.now() - 10 * 60_000).toISOString();
    await s.put(
      "locks/shared-x",
      Buffer.from(
        JSON.stringify({
          kind: "shared",
          host: "elsewhere",
          pid: 1,
          purpose: "b",
          createdAt: old,
          refreshedAt: old,
        }),
      ),
    );
    expect((await listLocks(s))[0]!.stale).toBe(true);
  });
});

describe("prune and gc", () => {
  it("GC removes only unreferenced chunks past the grace period; every snapshot still verifies", async () => {
    const s = new MemoryObjectStore();
    const r = await track(newRepo(s, undefined, 1));
    const a = await backup(r, vmDisk(8 * CS, 21));
    const b = await backup(r, vmDisk(8 * CS, 22));
    await pruneSnapshots(r, { keepLast: 1 });
    expect((await r.listSnapshots()).map((m) => m.id)).toEqual([b.id]);
    const spared = await collectGarbage(r); // default 1 h grace: everything is too young
    expect(spared.chunksDeleted).toBe(0);
    expect(spared.chunksSpared).toBeGreaterThan(0);
    const rep = await collectGarbage(r, { graceMs: -1000 });
    expect(rep.chunksDeleted).toBeGreaterThan(0);
    expect(rep.indexesDeleted).toBe(1);
    expect((await verifyRepository(r, { readData: true })).ok).toBe(true);
    expect(isCairnError(await r.openDisk(a.id, "vda").catch((x: unknown) => x), "not-found")).toBe(true);
    const st = await repositoryStats(r);
    expect(st.storedBytes).toBeGreaterThan(0);
    expect(st.chunkObjects).toBeGreaterThan(0);
  });

  it("GC refuses to run beside a backup (shared lock held)", async () => {
    const r = await track(newRepo());
    const w = await r.beginSnapshot({ vm });
    expect(isCairnError(await collectGarbage(r).catch((x: unknown) => x), "failed-precondition")).toBe(true);
    await w.abort();
  });

  it("protected snapshots survive prune", async () => {
    const r = await track(newRepo());
    const w = await r.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vda", virtualSize: CS, sourceFormat: "raw", kind: "full" });
    await d.write(0, vmDisk(CS));
    await d.finish();
    const keep = await w.seal({ ...sealOpts, protected: true });
    await backup(r, vmDisk(CS, 2));
    await backup(r, vmDisk(CS, 3));
    const dec = await pruneSnapshots(r, { keepLast: 1 });
    expect(dec.keep.get(keep.id)).toEqual(["protected"]);
    expect((await r.listSnapshots()).length).toBe(2);
  });
});
