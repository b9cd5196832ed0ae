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
  const repo = await Repository.init(store, { chunkSize, workers: 2, scryptN: 1024 });
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
  it("defaults to 16 MiB worth of chunks, between 8 and 128", () => {
    expect(defaultMaxInFlight(256 * KiB)).toBe(64);
    expect(defaultMaxInFlight(1024 * KiB)).toBe(16);
    expect(defaultMaxInFlight(16 * 1024 * KiB)).toBe(8);
    expect(defaultMaxInFlight(64 * KiB)).toBe(128);
  });

  it("keeps 64 chunk uploads of 256 KiB going while the store is slow, and never more", async () => {
    expect(await peakPuts(256 * KiB, 100, 64)).toBe(64);
  });

  it("holds at most 16 MiB in flight with 1 MiB chunks", async () => {
    expect(await peakPuts(1024 * KiB, 40, 16)).toBe(16);
  });
});
