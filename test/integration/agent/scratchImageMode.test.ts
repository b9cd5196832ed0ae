import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createQcow2 } from "../../../agent/src/image/qemuImg.js";

// #24: scratch images hold every block the guest overwrites during a backup: owner-only.
describe("scratch images", () => {
  let dir = "";
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("are created 0600 whatever the umask (libvirt hands them to QEMU's user at backup-begin)", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-scratch-"));
    const old = process.umask(0o022);
    try {
      const path = join(dir, "vda.qcow2");
      await createQcow2(path, 64 * 1024 * 1024, AbortSignal.timeout(30_000));
      expect((await stat(path)).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });
});
