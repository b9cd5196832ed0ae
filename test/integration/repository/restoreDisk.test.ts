import { randomBytes } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { closeFd, openFd, readAll, writeAll } from "../../../shared/src/repository/backends/fdIo.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import type { RestorePointReader } from "../../../shared/src/repository/RestorePointReader.js";
import { restoreDisk } from "../../../shared/src/repository/restore/restoreDisk.js";

/*
 * The disk restore engine against real files, qemu-img/qemu-nbd and a loop device. The disk:
 * 64 chunks + 512 bytes, data in chunks 5–8 (unaligned) and in the final partial chunk, zeros
 * elsewhere (ZERO_BYTES of them).
 */
const CS = 64 * 1024;
const SIZE = 64 * CS + 512;
const ZERO_BYTES = SIZE - 4 * CS - 512; // chunks 5..8 and the tail hold data
const disk = Buffer.alloc(SIZE);
randomBytes(3 * CS).copy(disk, 5 * CS + 100);
randomBytes(512).copy(disk, 64 * CS);

let dir: string;
let repo: Repository;
let snapshotId: string;
let refRaw: string;
const open = (): Promise<RestorePointReader> => repo.openDisk(snapshotId, "vda");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cairn-restore-disk-"));
  repo = await Repository.init(new LocalObjectStore(join(dir, "repo")), { chunkSize: CS, workers: 1 });
  const w = await repo.beginSnapshot({ vm: { uuid: "u", name: "n" } });
  const d = await w.addDisk({ target: "vda", virtualSize: SIZE, sourceFormat: "qcow2", kind: "full" });
  await d.write(5 * CS + 100, disk.subarray(5 * CS + 100, 8 * CS + 100));
  await d.write(64 * CS, disk.subarray(64 * CS));
  await d.finish();
  snapshotId = (await w.seal({ domainXml: "<domain/>", consistency: { kind: "quiesced" } })).id;
  refRaw = join(dir, "reference.raw");
  await writeFile(refRaw, disk);
});
afterAll(async () => {
  await repo?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function fresh(name: string): Promise<string> {
  const d = await mkdtemp(join(dir, `${name}-`));
  return d;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

describe("restoreDisk to files", () => {
  it("writes a raw file 0600 with the snapshot's bytes, zero runs left as holes", async () => {
    const path = join(await fresh("raw"), "vda.raw");
    const r = await restoreDisk(await open(), path, { format: "raw" });
    expect((await readFile(path)).equals(disk)).toBe(true);
    const st = await stat(path);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.blocks * 512).toBeLessThan(SIZE / 2);
    expect(r).toMatchObject({ kind: "new-file", dataBytes: 4 * CS + 512, zeroBytesWritten: 0 });
  });

  it("writes a valid qcow2 directly: no raw temporary ever exists, only data clusters allocated", async () => {
    const d = await fresh("qcow2");
    const path = join(d, "vda.qcow2");
    const seen = new Set<string>();
    const watcher: FSWatcher = watch(d, (_event, name) => {
      if (name) seen.add(String(name));
    });
    try {
      await restoreDisk(await open(), path, { format: "qcow2" });
    } finally {
      watcher.close();
    }
    expect([...seen].filter((n) => n !== "vda.qcow2")).toEqual([]);
    expect(await readdir(d)).toEqual(["vda.qcow2"]);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await execa("qemu-img", ["check", "-q", "-f", "qcow2", path]);
    // compare exits 0 only when the guest-visible contents are identical
    await execa("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "raw", path, refRaw]);
    const map = JSON.parse(
      (await execa("qemu-img", ["map", "--output=json", "-f", "qcow2", path])).stdout,
    ) as {
      start: number;
      length: number;
      data: boolean;
    }[];
    const allocated = map.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
    expect(allocated).toBeLessThanOrEqual(5 * CS); // chunks 5..8 and the tail's cluster
  });

  for (const format of ["raw", "qcow2"] as const) {
    it(`${format}: an existing file without force is already-exists and left untouched; with force it is replaced`, async () => {
      const path = join(await fresh(`exists-${format}`), "vda");
      await writeFile(path, "precious", { mode: 0o644 });
      const e = await rejection(restoreDisk(await open(), path, { format }));
      expect(isCairnError(e, "already-exists")).toBe(true);
      expect(await readFile(path, "utf8")).toBe("precious");

      await restoreDisk(await open(), path, { format, force: true });
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      if (format === "raw") expect((await readFile(path)).equals(disk)).toBe(true);
      else await execa("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "raw", path, refRaw]);
    });

    it(`${format}: a symlink at the destination is refused even with force; its target untouched`, async () => {
      const d = await fresh(`symlink-${format}`);
      const victim = join(d, "victim");
      await writeFile(victim, "victim");
      const path = join(d, "vda");
      await symlink(victim, path);
      for (const force of [false, true]) {
        const e = await rejection(restoreDisk(await open(), path, { format, force }));
        expect(isCairnError(e, "invalid-argument"), String(e)).toBe(true);
        expect((e as Error).message).toMatch(/symbolic link/);
      }
      expect(await readFile(victim, "utf8")).toBe("victim");
      // A dangling symlink is not "missing": O_EXCL|O_NOFOLLOW would refuse it, and so does the plan.
      const dangling = join(d, "dangling");
      await symlink(join(d, "nowhere"), dangling);
      expect(
        isCairnError(await rejection(restoreDisk(await open(), dangling, { format })), "invalid-argument"),
      ).toBe(true);
      expect(await readdir(d)).toEqual(["dangling", "vda", "victim"]);
    });

    it(`${format}: an aborted restore removes the new file, and a replaced file keeps its content`, async () => {
      const d = await fresh(`abort-${format}`);
      const path = join(d, "vda");
      const ac = new AbortController();
      const reader = await open();
      const fetch = reader.fetchChunk.bind(reader);
      reader.fetchChunk = (i, signal) => {
        if (i === 6) ac.abort();
        return fetch(i, signal);
      };
      const e = await rejection(restoreDisk(reader, path, { format, signal: ac.signal }));
      expect(isCairnError(e, "aborted"), String(e)).toBe(true);
      expect(await readdir(d)).toEqual([]);

      await writeFile(path, "old");
      const ac2 = new AbortController();
      reader.fetchChunk = (i, signal) => {
        if (i === 6) ac2.abort();
        return fetch(i, signal);
      };
      const e2 = await rejection(restoreDisk(reader, path, { format, force: true, signal: ac2.signal }));
      expect(isCairnError(e2, "aborted")).toBe(true);
      expect(await readdir(d)).toEqual(["vda"]);
      expect(await readFile(path, "utf8")).toBe("old");
    });
  }

  it("refuses a directory and a bad format clearly", async () => {
    const d = await fresh("other");
    expect(
      isCairnError(
        await rejection(restoreDisk(await open(), d, { format: "raw", force: true })),
        "invalid-argument",
      ),
    ).toBe(true);
    const e = await rejection(restoreDisk(await open(), join(d, "x"), { format: "vmdk" }));
    expect(isCairnError(e, "invalid-argument")).toBe(true);
    expect(await readdir(d)).toEqual([]);
  });
});

/** A loop device over a sparse file, or why there is none. */
async function loopDevice(backing: string, size: number): Promise<string> {
  await writeFile(backing, "");
  await truncate(backing, size);
  return (await execa("losetup", ["-f", "--show", backing])).stdout.trim();
}
const loops: string[] = [];
let loopUnavailable: string | undefined;
try {
  const probe = await execa("losetup", ["--version"], { reject: false });
  if (probe.exitCode !== 0) loopUnavailable = "losetup is not installed";
  else if (process.getuid?.() !== 0) loopUnavailable = "loop devices need root";
} catch (e) {
  loopUnavailable = `losetup cannot run: ${(e as Error).message}`;
}
afterAll(async () => {
  for (const l of loops) await execa("losetup", ["-d", l], { reject: false });
});

describe.skipIf(loopUnavailable !== undefined)(
  `restoreDisk to a block device${loopUnavailable ? ` (skipped: ${loopUnavailable})` : ""}`,
  () => {
    const DEVICE = 80 * CS; // larger than the disk: the tail must survive (no truncation)

    async function device(name: string): Promise<{ dev: string; backing: string }> {
      const backing = join(await fresh(name), "backing.img");
      const dev = await loopDevice(backing, DEVICE);
      loops.push(dev);
      return { dev, backing };
    }

    async function readDevice(dev: string, length: number): Promise<Buffer> {
      const fd = await openFd(dev, 0);
      try {
        const b = Buffer.alloc(length);
        expect(await readAll(fd, b, 0)).toBe(length);
        return b;
      } finally {
        await closeFd(fd);
      }
    }

    it("a pre-zeroed device: bytes equal, zero runs not rewritten (nothing allocated behind them), tail kept", async () => {
      const { dev, backing } = await device("blk-zeroed");
      const marker = randomBytes(4096);
      const fd = await openFd(dev, 2);
      await writeAll(fd, marker, DEVICE - 4096);
      await closeFd(fd);

      expect(
        isCairnError(await rejection(restoreDisk(await open(), dev, { format: "raw" })), "already-exists"),
      ).toBe(true);
      const r = await restoreDisk(await open(), dev, { format: "raw", force: true });
      const back = await readDevice(dev, DEVICE);
      expect(back.subarray(0, SIZE).equals(disk)).toBe(true);
      expect(back.subarray(DEVICE - 4096).equals(marker)).toBe(true);
      expect(r).toMatchObject({
        kind: "block-device",
        dataBytes: 4 * CS + 512,
        zeroBytesWritten: 0,
        zeroBytesSkipped: ZERO_BYTES,
      });
      // Independent of the engine's own count: writing zeros through the loop device would have
      // allocated them in the sparse backing file.
      expect((await stat(backing)).blocks * 512).toBeLessThanOrEqual(5 * CS + 4096 + 64 * 1024);
    });

    it("a dirty device: zero runs are zeroed, bytes equal", async () => {
      const { dev } = await device("blk-dirty");
      const fd = await openFd(dev, 2);
      await writeAll(fd, randomBytes(DEVICE), 0);
      await closeFd(fd);
      const r = await restoreDisk(await open(), dev, { format: "raw", force: true });
      expect((await readDevice(dev, SIZE)).equals(disk)).toBe(true);
      expect(r.zeroBytesWritten).toBe(ZERO_BYTES);
    });

    it("refuses a device smaller than the disk, and qcow2 onto a device, without writing", async () => {
      const backing = join(await fresh("blk-small"), "backing.img");
      const dev = await loopDevice(backing, 32 * CS);
      loops.push(dev);
      const e = await rejection(restoreDisk(await open(), dev, { format: "raw", force: true }));
      expect(isCairnError(e, "failed-precondition"), String(e)).toBe(true);
      expect((e as Error).message).toMatch(/less than the disk's/);
      expect(
        isCairnError(
          await rejection(restoreDisk(await open(), dev, { format: "qcow2", force: true })),
          "invalid-argument",
        ),
      ).toBe(true);
      expect((await stat(backing)).blocks).toBe(0);
    });

    it("an aborted restore leaves the device as it is and says it is partial", async () => {
      const { dev } = await device("blk-abort");
      const ac = new AbortController();
      const reader = await open();
      const fetch = reader.fetchChunk.bind(reader);
      reader.fetchChunk = (i, signal) => {
        if (i === 6) ac.abort();
        return fetch(i, signal);
      };
      const e = await rejection(restoreDisk(reader, dev, { format: "raw", force: true, signal: ac.signal }));
      expect(isCairnError(e, "aborted"), String(e)).toBe(true);
      expect((e as Error).message).toMatch(/partial disk/);
    });
  },
);
