import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageInfo } from "../../../agent/src/image/qemuImg.js";
import { virtualSize } from "../../../agent/src/image/virtualSize.js";

let dir: string;
const sig = () => AbortSignal.timeout(30_000);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cairn-vsize-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("virtualSize (read from the image, qemu-img only where needed)", () => {
  it("matches qemu-img info for qcow2 images of odd sizes, v2 and v3, with a backing file", async () => {
    const cases: [string, string[]][] = [
      ["v3-odd.qcow2", ["-o", "compat=1.1", "1073742336"]], // 1 GiB + 512
      ["v2.qcow2", ["-o", "compat=0.10", "123456512"]],
      ["big.qcow2", ["-o", "cluster_size=2M", "17592186044416"]], // 16 TiB
    ];
    for (const [name, args] of cases) {
      const p = join(dir, name);
      await execa("qemu-img", ["create", "-q", "-f", "qcow2", ...args.slice(0, -1), p, args.at(-1)!]);
      expect(await virtualSize(p, "qcow2", sig())).toBe((await imageInfo(p, sig())).virtualSize);
    }
    const overlay = join(dir, "overlay.qcow2");
    const base = join(dir, "v2.qcow2");
    await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay]);
    expect(await virtualSize(overlay, "qcow2", sig())).toBe(123456512);
  });

  it("takes a raw file's length", async () => {
    const p = join(dir, "disk.raw");
    await writeFile(p, "");
    await truncate(p, 50 * 1024 * 1024 + 4096);
    expect(await virtualSize(p, "raw", sig())).toBe(50 * 1024 * 1024 + 4096);
  });

  it("asks qemu-img when the header is not what the domain says, or the format is another", async () => {
    // A domain that says qcow2 for what is a raw file: the fast path must not guess.
    const p = join(dir, "not-qcow2.img");
    await writeFile(p, Buffer.alloc(3 * 1024 * 1024, 0x5a));
    expect(await virtualSize(p, "qcow2", sig())).toBe(3 * 1024 * 1024);
    const vmdk = join(dir, "d.vmdk");
    await execa("qemu-img", ["create", "-q", "-f", "vmdk", vmdk, "64M"]);
    expect(await virtualSize(vmdk, "vmdk", sig())).toBe(64 * 1024 * 1024);
    await expect(virtualSize(join(dir, "missing.qcow2"), "qcow2", sig())).rejects.toThrow(/missing\.qcow2/);
  });

  it("spawns no qemu-img for qcow2 and raw files (the point: it is on the path to the freeze)", async () => {
    const path = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      expect(await virtualSize(join(dir, "v3-odd.qcow2"), "qcow2", sig())).toBe(1073742336);
      expect(await virtualSize(join(dir, "disk.raw"), "raw", sig())).toBe(50 * 1024 * 1024 + 4096);
      await expect(virtualSize(join(dir, "d.vmdk"), "vmdk", sig())).rejects.toThrow(/qemu-img|ENOENT/);
    } finally {
      process.env.PATH = path;
    }
  });
});
