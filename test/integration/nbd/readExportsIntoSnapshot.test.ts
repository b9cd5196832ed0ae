import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupPlan } from "../../../agent/src/backup/planDisks.js";
import { readExportsIntoSnapshot } from "../../../agent/src/backup/readExportsIntoSnapshot.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { Peers } from "./support/processes.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const peers = new Peers();
afterAll(() => peers.stopAll());

describe("backup reads into the repository's chunk buffers, for any chunk and request size", () => {
  let dir: string;
  let sock: string;
  let image: Buffer;

  beforeAll(async () => {
    dir = await peers.tempDir();
    sock = join(dir, "disk.sock");
    // Random, a zero stretch (a hole in base:allocation), random, and a tail that ends mid-chunk.
    image = Buffer.concat([
      randomBytes(2 * MiB + 300 * KiB),
      Buffer.alloc(MiB),
      randomBytes(3 * MiB + 4096 + 512),
    ]);
    await writeFile(join(dir, "disk.raw"), image);
    await peers.qemuNbd({ image: join(dir, "disk.raw"), format: "raw", socket: sock, readOnly: true });
  });

  // 256 KiB requests into 256 KiB chunks: whole chunks are adopted as read. 1 MiB requests into
  // 256 KiB chunks: one READ scattered into four chunk buffers. 1 MiB chunks read in 256 KiB pieces:
  // every piece goes through a plain buffer and is copied. 1 MiB into 1 MiB: adopted.
  for (const [chunkSize, requestSize] of [
    [256 * KiB, 256 * KiB],
    [256 * KiB, MiB],
    [MiB, 256 * KiB],
    [MiB, MiB],
  ] as const) {
    it(`chunks of ${chunkSize / KiB} KiB, requests of ${requestSize / KiB} KiB: the restore point is the disk`, async () => {
      const repo = await Repository.init(
        new LocalObjectStore(join(dir, `repo-${chunkSize}-${requestSize}`)),
        {
          chunkSize,
        },
      );
      try {
        const writer = await repo.beginSnapshot({
          vm: { uuid: "00000000-0000-4000-8000-000000000001", name: "vm" },
        });
        const plan: BackupPlan = {
          newCheckpoint: null,
          disks: [
            {
              target: "vda",
              kind: "full",
              incrementalFrom: null,
              parentSnapshot: null,
              fullReason: "test",
              bitmap: false,
            },
          ],
        };
        const { bytesRead } = await readExportsIntoSnapshot(
          writer,
          plan,
          [{ target: "vda", endpoint: { kind: "unix", path: sock }, exportName: "", sourceFormat: "raw" }],
          { requestSize, depth: 8, chunkSize, signal: AbortSignal.timeout(60_000) },
        );
        const m = await writer.seal({
          domainXml: "<domain/>",
          consistency: { kind: "crash-consistent", reason: "test" },
        });
        expect(bytesRead).toBeLessThanOrEqual(image.length);
        const disk = await repo.openDisk(m.id, "vda");
        expect((await disk.read(0, image.length)).equals(image)).toBe(true);
      } finally {
        await repo.close();
      }
    });
  }
});
