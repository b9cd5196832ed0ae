import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { CS, newRepo, sealOpts, vm, vmDisk } from "./helpers.js";

/**
 * Model check of the writer: any sequence of data/zero extents at arbitrary (unaligned, overlapping,
 * out-of-order) offsets, over any parent, reads back as the same writes applied to a plain buffer.
 */
let repo: Repository;
beforeAll(async () => {
  repo = await newRepo(new MemoryObjectStore());
});
afterAll(async () => {
  await repo.close();
});

const SIZE = 6 * CS + 1234;
const opArb = fc.record({
  offset: fc.integer({ min: 0, max: SIZE - 1 }),
  length: fc.integer({ min: 1, max: 2 * CS }),
  zero: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1000 }),
});

describe("DiskWriter (model-based)", () => {
  it("incremental = parent with the extents applied, in any order and alignment", async () => {
    const parentData = vmDisk(SIZE, 99);
    const w0 = await repo.beginSnapshot({ vm });
    const d0 = await w0.addDisk({ target: "vda", virtualSize: SIZE, sourceFormat: "raw", kind: "full" });
    await d0.write(0, parentData);
    await d0.finish();
    const parent = await w0.seal(sealOpts);

    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        async (ops, maxOpen) => {
          const model = Buffer.from(parentData);
          const w = await repo.beginSnapshot({ vm });
          const d = await w.addDisk({
            target: "vda",
            virtualSize: SIZE,
            sourceFormat: "raw",
            kind: "incremental",
            parent: { snapshotId: parent.id },
            maxOpenChunks: maxOpen,
            maxInFlight: 2,
          });
          for (const op of ops) {
            const len = Math.min(op.length, SIZE - op.offset);
            if (op.zero) {
              model.fill(0, op.offset, op.offset + len);
              await d.writeZeroes(op.offset, len);
            } else {
              const data = vmDisk(len, op.seed);
              data.copy(model, op.offset);
              await d.write(op.offset, data);
            }
          }
          await d.finish();
          const m = await w.seal(sealOpts);
          const got = await (await repo.openDisk(m.id, "vda")).read(0, SIZE);
          expect(got.equals(model)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  }, 60_000);

  it("concurrent, unawaited writes of disjoint pieces land exactly (agent pipelines may overlap)", async () => {
    const parentData = vmDisk(SIZE, 98);
    const w0 = await repo.beginSnapshot({ vm });
    const d0 = await w0.addDisk({ target: "vda", virtualSize: SIZE, sourceFormat: "raw", kind: "full" });
    await d0.write(0, parentData);
    await d0.finish();
    const parent = await w0.seal(sealOpts);
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: SIZE - 1 }), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 1000 }),
        async (cuts, maxOpen, seed) => {
          const bounds = [0, ...[...cuts].sort((a, b) => a - b), SIZE];
          const model = Buffer.from(parentData);
          const w = await repo.beginSnapshot({ vm });
          const d = await w.addDisk({
            target: "vda",
            virtualSize: SIZE,
            sourceFormat: "raw",
            kind: "incremental",
            parent: { snapshotId: parent.id },
            maxOpenChunks: maxOpen,
            maxInFlight: 2,
          });
          const pending: Promise<void>[] = [];
          for (let k = 0; k + 1 < bounds.length; k++) {
            if ((k + seed) % 3 === 0) continue; // leave some pieces to the parent
            const [a, b] = [bounds[k]!, bounds[k + 1]!];
            const data = vmDisk(b - a, seed + k);
            data.copy(model, a);
            pending.push(d.write(a, data));
          }
          await Promise.all(pending);
          await d.finish();
          const m = await w.seal(sealOpts);
          expect((await (await repo.openDisk(m.id, "vda")).read(0, SIZE)).equals(model)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  }, 60_000);
});
