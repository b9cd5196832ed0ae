import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { S3ObjectStore } from "../../../shared/src/repository/backends/S3ObjectStore.js";
import { RetryingObjectStore } from "../../../shared/src/repository/decorators/RetryingObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { PACKS_PREFIX } from "../../../shared/src/repository/layout.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import { SwiftServer } from "../../services/swift/SwiftServer.js";
import { objectStoreContract } from "../../support/objectStoreContract.js";

let swift: SwiftServer;
const stores: S3ObjectStore[] = [];
beforeAll(async () => {
  swift = await SwiftServer.start();
});
afterAll(async () => {
  for (const s of stores) s.destroy();
  await swift?.stop();
});

async function fresh(): Promise<S3ObjectStore> {
  const s = new S3ObjectStore({
    ...swift.s3,
    bucket: "cairn-contract",
    prefix: `${randomBytes(6).toString("hex")}/`,
  });
  stores.push(s);
  await s.ensureBucket();
  return s;
}

objectStoreContract("S3ObjectStore on Swift s3api", fresh);

describe("S3ObjectStore specifics", () => {
  it("a wrong secret is refused (the server checks signatures)", async () => {
    const s = new S3ObjectStore({ ...swift.s3, secretAccessKey: "wrong", bucket: "cairn-contract" });
    stores.push(s);
    const e = await s.put("x", Buffer.from("x")).catch((x: unknown) => x);
    expect(isCairnError(e, "permission-denied")).toBe(true);
  });
});

const CS = 64 * 1024;
const vm = { uuid: "u1", name: "vm1" };
const seal = { domainXml: "<domain/>", consistency: { kind: "quiesced" as const } };

describe("Repository on S3 (Swift)", () => {
  it("writes, reads back and verifies an encrypted incremental chain", async () => {
    const store = await fresh();
    const repo = await Repository.init(store, { chunkSize: CS, passphrase: "pw", scryptN: 1024, workers: 1 });
    try {
      const a = randomBytes(10 * CS);
      const w1 = await repo.beginSnapshot({ vm });
      const d1 = await w1.addDisk({
        target: "vda",
        virtualSize: a.length,
        sourceFormat: "qcow2",
        kind: "full",
      });
      await d1.write(0, a);
      await d1.finish();
      const m1 = await w1.seal(seal);
      const b = Buffer.from(a);
      randomBytes(1000).copy(b, 3 * CS + 17);
      const w2 = await repo.beginSnapshot({ vm });
      const d2 = await w2.addDisk({
        target: "vda",
        virtualSize: a.length,
        sourceFormat: "qcow2",
        kind: "incremental",
        parent: { snapshotId: m1.id },
      });
      await d2.write(3 * CS + 17, b.subarray(3 * CS + 17, 3 * CS + 1017));
      const e2 = await d2.finish();
      const m2 = await w2.seal(seal);
      expect(e2.stats.chunksNew).toBe(1);
      expect((await (await repo.openDisk(m2.id, "vda")).read(0, b.length)).equals(b)).toBe(true);
      expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
      // Retention drops the full; GC rewrites the two small packs into one (encrypted frames are
      // copied as they are: their AAD names the chunk, not the pack).
      await pruneSnapshots(repo, { keepLast: 1 });
      const gc = await collectGarbage(repo, { graceMs: -1000 });
      expect(gc.packsRepacked).toBeGreaterThanOrEqual(2);
      let packs = 0;
      for await (const _ of store.list(PACKS_PREFIX)) packs++;
      expect(packs).toBe(1);
      const reopened = await Repository.open(store, { passphrase: "pw", workers: 1 });
      try {
        expect((await (await reopened.openDisk(m2.id, "vda")).read(0, b.length)).equals(b)).toBe(true);
        expect((await verifyRepository(reopened, { readData: true })).problems).toEqual([]);
      } finally {
        await reopened.close();
      }
    } finally {
      await repo.close();
    }
  });

  it("S3 server stopped mid-backup: bounded retries, then a clear error; the repository stays consistent", async () => {
    const raw = await fresh();
    let retries = 0;
    const store = new RetryingObjectStore(raw, { attempts: 4, baseDelayMs: 100, onRetry: () => retries++ });
    const repo = await Repository.init(store, { chunkSize: CS, workers: 1 });
    try {
      const base = randomBytes(4 * CS);
      const w0 = await repo.beginSnapshot({ vm });
      const d0 = await w0.addDisk({
        target: "vda",
        virtualSize: base.length,
        sourceFormat: "raw",
        kind: "full",
      });
      await d0.write(0, base);
      await d0.finish();
      const ok = await w0.seal(seal);

      const w = await repo.beginSnapshot({ vm });
      const d = await w.addDisk({ target: "vda", virtualSize: 64 * CS, sourceFormat: "raw", kind: "full" });
      const t0 = Date.now();
      let err: unknown;
      try {
        for (let i = 0; i < 64; i++) {
          if (i === 8) await swift.stopProxy();
          await d.write(i * CS, randomBytes(CS));
        }
        await d.finish();
        await w.seal(seal);
      } catch (e) {
        err = e;
        await w.abort();
      }
      const elapsed = Date.now() - t0;
      expect(isCairnError(err, "unavailable")).toBe(true);
      expect((err as Error).message).toContain("gave up after 4 attempts");
      expect((err as Error).message).toContain("s3://cairn-contract/");
      expect(retries).toBeGreaterThanOrEqual(3);
      expect(elapsed).toBeLessThan(30_000);

      await swift.startProxy();
      expect((await repo.listSnapshots()).map((m) => m.id)).toEqual([ok.id]);
      expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
      // and the next backup works
      const w2 = await repo.beginSnapshot({ vm });
      const d2 = await w2.addDisk({
        target: "vda",
        virtualSize: base.length,
        sourceFormat: "raw",
        kind: "incremental",
        parent: { snapshotId: ok.id },
      });
      await d2.write(0, randomBytes(CS));
      await d2.finish();
      await w2.seal(seal);
      expect((await repo.listSnapshots()).length).toBe(2);
    } finally {
      await repo.close();
    }
  });
});
