import { createHash } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupRequest } from "../../agent/src/backup/BackupRequest.js";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";

const MiB = 1024 * 1024;
const lab = new Lab();
let vm: LabVm;
let h: Awaited<ReturnType<typeof agentHarness>>;
let n = 0;
const backup = (mode: BackupRequest["mode"]) =>
  runBackup(h.deps, h.config, {
    jobId: `o-${++n}`,
    domain: vm.name,
    mode,
    quiesce: "preferred",
    signal: AbortSignal.timeout(240_000),
  });
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** sha256 of a shut-off VM's disk as raw, read on the host. */
async function hostImageHash(target: string): Promise<string> {
  const d = vm.disks.find((x) => x.target === target)!;
  const out = join(h.dir, `host-${target}.raw`);
  await run("qemu-img", ["convert", "-f", d.format, "-O", "raw", d.path, out]);
  const hash = sha(await readFile(out));
  await rm(out);
  return hash;
}

beforeAll(async () => {
  vm = await lab.createVm({
    label: "off",
    disks: [
      { kind: "ext4-data" },
      { kind: "blank", format: "qcow2", sizeMiB: 64 },
      { kind: "blank", format: "raw", sizeMiB: 16 },
    ],
  });
  await vm.boot();
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
});
afterAll(async () => {
  await lab.dispose();
  await h?.dispose();
});

describe("offline backup of a shut-off VM", () => {
  it("live full → shut down → offline incremental → boot → live incremental: one chain, every point exact", async () => {
    await vm.writePattern("/dev/vdb", 2 * MiB, MiB, 0x61);
    const s1 = await backup("auto");
    expect(s1.offline).toBe(false);

    await vm.writePattern("/dev/vdb", 20 * MiB, MiB, 0x62);
    await vm.shutdown();
    const s2 = await backup("auto");
    expect(s2.offline).toBe(true);
    const vdb2 = s2.manifest.disks.find((d) => d.target === "vdb")!;
    expect(vdb2).toMatchObject({ kind: "incremental", parentSnapshot: s1.manifest.id });
    expect(vdb2.stats.bytesRead).toBe(MiB);
    expect(s2.manifest.disks.find((d) => d.target === "vdc")?.fullReason).toMatch(/raw-format/);
    expect(await h.restoredHash(s2.manifest.id, "vdb")).toBe(await hostImageHash("vdb"));
    expect(await h.restoredHash(s2.manifest.id, "vdc")).toBe(await hostImageHash("vdc"));
    // libvirt knows the offline checkpoint, chained after the live one; no temporary bitmaps remain.
    const cps = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
    expect(cps.map((c) => [c.name, c.parent])).toEqual([
      [s1.plan.newCheckpoint, undefined],
      [s2.plan.newCheckpoint, s1.plan.newCheckpoint],
    ]);
    const info = JSON.parse((await run("qemu-img", ["info", "--output=json", vm.disks[1]!.path])).stdout);
    expect(info["format-specific"].data.bitmaps.map((b: { name: string }) => b.name).sort()).toEqual(
      [s1.plan.newCheckpoint, s2.plan.newCheckpoint].sort(),
    );

    await vm.boot();
    await vm.writePattern("/dev/vdb", 40 * MiB, MiB, 0x63);
    const s3 = await backup("auto");
    expect(s3.offline).toBe(false);
    const vdb3 = s3.manifest.disks.find((d) => d.target === "vdb")!;
    expect(vdb3).toMatchObject({ kind: "incremental", parentSnapshot: s2.manifest.id });
    expect(vdb3.stats.bytesRead).toBe(MiB);
    const guest = await vm.deviceHash("/dev/vdb");
    expect(await h.restoredHash(s3.manifest.id, "vdb")).toBe(guest);
  });
});
