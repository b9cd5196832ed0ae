import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { defaultMaxInFlight } from "../../../shared/src/repository/DiskWriter.js";
import type { PutOptions } from "../../../shared/src/repository/ports/ObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { KiB, sealOpts, vm } from "./helpers.js";

/** A store whose chunk puts wait until released: counts how many a writer has going at once. */
class GatedStore extends MemoryObjectStore {
  inFlight = 0;
  peak = 0;
  private gate: Promise<void>;
  private open!: () => void;
  constructor() {
    super();
    this.gate = new Promise((r) => {
      this.open = r;
    });
  }
  release(): void {
    this.open();
  }
  override async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    if (!key.startsWith("chunks/")) return super.put(key, data, options);
    const copy = Uint8Array.from(data); // the writer reuses its buffer once put settles
    this.inFlight++;
    this.peak = Math.max(this.peak, this.inFlight);
    try {
      await this.gate;
      return await super.put(key, copy, options);
    } finally {
      this.inFlight--;
    }
  }
}

const repos: Repository[] = [];
afterEach(async () => {
  for (const r of repos.splice(0)) await r.close();
});

/** Peak concurrent chunk puts of a full backup of `chunks` chunks, once `expected` are going (or 5 s). */
async function peakPuts(chunkSize: number, chunks: number, expected: number): Promise<number> {
  const store = new GatedStore();
  const repo = await Repository.init(store, { chunkSize, workers: 2, scryptN: 1024, formatVersion: 1 });
  repos.push(repo);
  const w = await repo.beginSnapshot({ vm });
  const d = await w.addDisk({
    target: "vda",
    virtualSize: chunks * chunkSize,
    sourceFormat: "raw",
    kind: "full",
  });
  // Feed chunks until the writer pushes back; the puts are all held at the gate meanwhile.
  const writes: Promise<void>[] = [];
  for (let i = 0; i < chunks; i++) writes.push(d.write(i * chunkSize, randomBytes(chunkSize)));
  const settled = Promise.all(writes);
  for (let i = 0; i < 250 && store.inFlight < expected; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100)); // room to overshoot, if it would
  const peak = store.peak;
  store.release();
  await settled;
  await d.finish();
  await w.seal(sealOpts);
  expect(store.inFlight).toBe(0);
  return peak;
}

describe("DiskWriter chunks in flight", () => {
  it("defaults to 64 MiB worth of chunks, between 8 and 256", () => {
    expect(defaultMaxInFlight(256 * KiB)).toBe(256);
    expect(defaultMaxInFlight(1024 * KiB)).toBe(64);
    expect(defaultMaxInFlight(16 * 1024 * KiB)).toBe(8);
    expect(defaultMaxInFlight(64 * KiB)).toBe(256);
  });

  it("keeps 256 chunk uploads of 256 KiB going while the store is slow, and never more", async () => {
    expect(await peakPuts(256 * KiB, 300, 256)).toBe(256);
  });

  it("holds at most 64 MiB in flight with 1 MiB chunks", async () => {
    expect(await peakPuts(1024 * KiB, 80, 64)).toBe(64);
  });
});

/**
 * A store whose chunk heads take a few ms, recording puts of a key made while its own head was
 * pending. Its staged puts stay hidden until commitStaged, like LocalObjectStore's temporaries
 * (stagedPutsHidden).
 */
class SlowHeadStore extends MemoryObjectStore {
  readonly stagedPutsHidden = true;
  private readonly stagedObjects: Array<[string, Uint8Array]> = [];
  private readonly headPending = new Set<string>();
  putsBesideOwnHead = 0;
  chunkPuts = 0;
  override async head(key: string, options?: { signal?: AbortSignal }) {
    if (!key.startsWith("chunks/")) return super.head(key, options);
    this.headPending.add(key);
    try {
      await new Promise((r) => setTimeout(r, 5));
      return await super.head(key, options);
    } finally {
      this.headPending.delete(key);
    }
  }
  override async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    if (key.startsWith("chunks/")) {
      this.chunkPuts++;
      if (this.headPending.has(key)) this.putsBesideOwnHead++;
    }
    if (options?.staged) {
      this.stagedObjects.push([key, Uint8Array.from(data)]);
      return;
    }
    return super.put(key, data, options);
  }
  override async commitStaged(): Promise<void> {
    for (const [k, v] of this.stagedObjects.splice(0)) await super.put(k, v);
  }
}

describe("DiskWriter speculative uploads", () => {
  const CS = 256 * KiB;
  async function full(repo: Repository, data: Buffer) {
    const w = await repo.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vda", virtualSize: data.length, sourceFormat: "raw", kind: "full" });
    await d.write(0, data);
    const entry = await d.finish();
    await w.seal(sealOpts);
    return entry.stats;
  }

  it("new chunks upload beside their existence check; a repeat full re-uploads none; stats stay exact", async () => {
    const store = new SlowHeadStore();
    const repo = await Repository.init(store, { chunkSize: CS, workers: 2, scryptN: 1024, formatVersion: 1 });
    repos.push(repo);
    const n = 200;
    const data = randomBytes(n * CS);
    const s1 = await full(repo, data);
    // Past the first in-flight window (64) every new chunk's upload started before its check ended.
    expect(store.putsBesideOwnHead).toBeGreaterThanOrEqual(n - 64 - 8);
    expect(s1.chunksNew).toBe(n);
    expect(s1.bytesNew).toBe(n * CS);

    const before = store.chunkPuts;
    const s2 = await full(repo, data);
    expect(store.chunkPuts - before).toBe(0);
    expect(s2.chunksNew).toBe(0);
    expect(s2.bytesNew).toBe(0);
    expect(s2.bytesStored).toBe(0);
    for (const snap of await repo.listSnapshots()) {
      const disk = await repo.openDisk(snap.id, "vda");
      expect((await disk.read(0, data.length)).equals(data)).toBe(true);
    }
  });

  it("does not speculate on a store whose staged puts show at once", async () => {
    const store = new SlowHeadStore();
    Object.defineProperty(store, "stagedPutsHidden", { value: false });
    const repo = await Repository.init(store, { chunkSize: CS, workers: 2, scryptN: 1024, formatVersion: 1 });
    repos.push(repo);
    const s = await full(repo, randomBytes(100 * CS));
    expect(store.putsBesideOwnHead).toBe(0);
    expect(s.chunksNew).toBe(100);
  });
});
