import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { restoreDisk } from "../../../shared/src/repository/restore/restoreDisk.js";

const CS = 64 * 1024;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("materialize", () => {
  it("writes a sparse raw file and a qcow2 that read back byte-identical", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cairn-mat-"));
    dirs.push(dir);
    const repo = await Repository.init(new LocalObjectStore(join(dir, "repo")), {
      chunkSize: CS,
      workers: 1,
    });
    try {
      const size = 64 * CS + 512; // ends in a partial chunk
      const disk = Buffer.alloc(size);
      randomBytes(3 * CS).copy(disk, 5 * CS + 100);
      randomBytes(512).copy(disk, 64 * CS);
      const w = await repo.beginSnapshot({ vm: { uuid: "u", name: "n" } });
      const d = await w.addDisk({ target: "vda", virtualSize: size, sourceFormat: "qcow2", kind: "full" });
      await d.write(5 * CS + 100, disk.subarray(5 * CS + 100, 8 * CS + 100));
      await d.write(64 * CS, disk.subarray(64 * CS));
      await d.finish();
      const m = await w.seal({ domainXml: "<domain/>", consistency: { kind: "quiesced" } });
      const reader = await repo.openDisk(m.id, "vda");

      const raw = join(dir, "vda.raw");
      await restoreDisk(reader, raw, { format: "raw" });
      expect((await readFile(raw)).equals(disk)).toBe(true);
      const st = await stat(raw);
      expect(st.blocks * 512).toBeLessThan(size / 2); // holes stayed holes

      const q = join(dir, "vda.qcow2");
      await restoreDisk(reader, q, { format: "qcow2" });
      const back = join(dir, "back.raw");
      await execa("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", q, back], { timeout: 60_000 });
      expect((await readFile(back)).equals(disk)).toBe(true);
      const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", q])).stdout) as {
        format: string;
      };
      expect(info.format).toBe("qcow2");
    } finally {
      await repo.close();
    }
  });
});
