import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { BandwidthLimitedObjectStore } from "../../../shared/src/repository/decorators/BandwidthLimitedObjectStore.js";
import { ConcurrencyLimitedObjectStore } from "../../../shared/src/repository/decorators/ConcurrencyLimitedObjectStore.js";
import { RetryingObjectStore } from "../../../shared/src/repository/decorators/RetryingObjectStore.js";
import { objectStoreContract } from "../../support/objectStoreContract.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function fresh(): Promise<LocalObjectStore> {
  const d = await mkdtemp(join(tmpdir(), "cairn-local-"));
  dirs.push(d);
  return new LocalObjectStore(d);
}

objectStoreContract("LocalObjectStore", fresh);

// The decorators must pass the local store's hints on (writers pad frames and upload speculatively by them).
objectStoreContract("LocalObjectStore behind every decorator", async () => {
  const s = new RetryingObjectStore(
    new ConcurrencyLimitedObjectStore(new BandwidthLimitedObjectStore(await fresh(), 1e9), 4),
  );
  expect(s.stagedPutsHidden).toBe(true);
  expect(s.writeAlignment).toBe(4096);
  return s;
});

describe("LocalObjectStore specifics", () => {
  it("leaves no temporaries after puts and sweeps old ones", async () => {
    const s = await fresh();
    await s.put("chunks/ab/x", Buffer.from("x"));
    expect(await readdir(join(s.location, "chunks", "ab"))).toEqual(["x"]);
    const { writeFile } = await import("node:fs/promises");
    await writeFile(join(s.location, "chunks", "ab", ".y.tmp-123"), "partial");
    const listed: string[] = [];
    for await (const o of s.list("chunks/")) listed.push(o.key);
    expect(listed).toEqual(["chunks/ab/x"]);
    expect(await s.sweepTemporaries(-1000)).toBe(1);
  });
});
