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
/** The chain's root: the first test's live full backup. */
let root: Awaited<ReturnType<typeof backup>>;
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
    root = s1;
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

  it("offline incremental → boot → guest writes → differential: every write since the chain's root, restore exact", async () => {
    // The VM runs; the chain's root is the first test's live full backup.
    await vm.writePattern("/dev/vdb", 8 * MiB, MiB, 0x64);
    await vm.shutdown();
    const s4 = await backup("auto");
    expect(s4.offline).toBe(true);
    expect(s4.manifest.disks.find((d) => d.target === "vdb")?.kind).toBe("incremental");

    await vm.boot();
    // libvirt keeps every checkpoint's bitmap recording; the offline path must leave them so.
    const bitmaps = await recordingBitmaps(vm.disks[1]!.path);
    const cps = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
    expect(cps[0]?.name).toBe(root.plan.newCheckpoint);
    for (const c of cps) expect(bitmaps.get(c.name), `bitmap ${c.name}`).toBe(true);

    await vm.writePattern("/dev/vdb", 50 * MiB, MiB, 0x65);
    const s5 = await backup("differential");
    const vdb5 = s5.manifest.disks.find((d) => d.target === "vdb")!;
    expect(vdb5).toMatchObject({ kind: "differential", parentSnapshot: root.manifest.id });
    // Written since the root: at 20 (offline), 40 (live), 8 (offline) and 50 MiB (now).
    expect(vdb5.stats.bytesRead).toBe(4 * MiB);
    expect(await h.restoredHash(s5.manifest.id, "vdb")).toBe(await vm.deviceHash("/dev/vdb"));
  });

  it("refuses an image a QEMU on another host has open (inactive definition left here): bitmaps untouched", async () => {
    const host2 = await lab.startSecondHost();
    await vm.migrate(host2, 180_000, { keepSource: true });
    try {
      // Host 1 still has the VM, shut off, with the same disks.
      expect((await run("virsh", ["-c", lab.host1.uri, "domstate", vm.name])).stdout.trim()).toBe("shut off");
      const before = await imageBitmaps(vm.disks[1]!.path);
      const cpsBefore = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
      const err = await backup("auto").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: "failed-precondition",
        message: expect.stringMatching(/is in use by another QEMU \(the VM may run on another host\)/),
        details: { deferred: "moved" },
      });
      expect(await imageBitmaps(vm.disks[1]!.path)).toEqual(before);
      // Nothing redefined on host 1, no export left running.
      expect(await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000))).toEqual(
        cpsBefore,
      );
      expect(
        (await run("pgrep", ["-f", `qemu-nbd.*${vm.disks[1]!.path}`], { allowFailure: true })).stdout,
      ).toBe("");
    } finally {
      await run("virsh", ["-c", lab.host1.uri, "undefine", vm.name, "--checkpoints-metadata"], {
        allowFailure: true,
      });
    }
  });
});

/** name → recording, from the running QEMU (query-named-block-nodes) for the node of `image`. */
async function recordingBitmaps(image: string): Promise<Map<string, boolean>> {
  const r = await vm.virsh([
    "qemu-monitor-command",
    vm.name,
    '{"execute":"query-named-block-nodes","arguments":{"flat":true}}',
  ]);
  const nodes = JSON.parse(r.stdout).return as {
    drv: string;
    file: string;
    "dirty-bitmaps"?: { name: string; recording: boolean }[];
  }[];
  const node = nodes.find((x) => x.drv === "qcow2" && x.file === image);
  return new Map((node?.["dirty-bitmaps"] ?? []).map((b) => [b.name, b.recording]));
}

/** The bitmaps stored in an image with their flags, read without taking its lock. */
async function imageBitmaps(image: string): Promise<unknown> {
  const info = JSON.parse((await run("qemu-img", ["info", "-U", "--output=json", image])).stdout);
  return info["format-specific"]?.data?.bitmaps ?? [];
}
