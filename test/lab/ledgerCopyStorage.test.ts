import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { eventually } from "../support/coordinatorHarness.js";
import { freePort } from "./support/freePort.js";
import type { LabHost } from "./support/LabHost.js";
import type { LabVm } from "./support/LabVm.js";
import { LedgerLab } from "./support/LedgerLab.js";

const MiB = 1024 * 1024;

// A live migration with --copy-storage-all (non-shared storage) to new images on the second host:
// QEMU carries vda's bitmap (qcow2 to qcow2) but not vdb's (copied to a raw volume). The ledger
// keeps vda's chain on kvm-b and demotes vdb alone, with the reason (issue #21).
describe("checkpoint ledger through a --copy-storage-all migration", () => {
  const L = new LedgerLab();
  let host2: LabHost;
  let vm: LabVm;

  const backup = (mode?: BackupMode) => L.backup(mode);
  const chain = () => L.chain();
  const restoreMatches = (snapshotId: string, target: string) => L.restoreMatches(snapshotId, target);

  beforeAll(async () => {
    await L.start("ledgercopy", [
      { kind: "blank", format: "qcow2", sizeMiB: 32, randomMiB: 8 },
      { kind: "blank", format: "qcow2", sizeMiB: 32, randomMiB: 8 },
    ]);
    ({ host2, vm } = L);
  }, 300_000);
  afterAll(() => L.dispose());

  it("vda's chain kept on kvm-b, vdb demoted as QEMU carried them; the next backup on kvm-b agrees with the ledger; restores exact", async () => {
    const t0 = Date.now();
    expect(await backup(BackupMode.BACKUP_MODE_FULL)).toMatchObject({ state: "succeeded", hostId: "kvm-a" });
    const cp = (await chain()).disks[0]!.lastCheckpoint;

    // New images on kvm-b: vda qcow2 (its bitmap travels), vdb raw (no bitmap can).
    const dst = join(vm.dir, "dst");
    await mkdir(dst, { recursive: true });
    let xml = (await vm.virsh(["dumpxml", vm.name, "--migratable"])).stdout;
    for (const d of vm.disks) {
      const format = d.target === "vdb" ? "raw" : "qcow2";
      const to = join(dst, `${d.target}.${format}`);
      await execa("qemu-img", ["create", "-q", "-f", format, to, String(32 * MiB)]);
      xml = xml.replace(/<disk\b[\s\S]*?<\/disk>/g, (disk) =>
        disk.includes(`'${d.path}'`)
          ? disk.replace(`'${d.path}'`, `'${to}'`).replace("type='qcow2'", `type='${format}'`)
          : disk,
      );
    }
    await writeFile(join(dst, "domain.xml"), xml);
    await execa("chown", ["-R", "libvirt-qemu:kvm", dst]);
    // Clear of the range's first ports: libvirt's NBD server for the disk copy takes one of them.
    const port = await freePort([host2.migrationPorts[0] + 30, host2.migrationPorts[1]]);
    await vm.virsh(
      [
        ...["migrate", "--live", "--copy-storage-all", "--persistent", "--undefinesource"],
        ...["--xml", join(dst, "domain.xml"), vm.name, host2.uri, "--migrateuri", `tcp://127.0.0.1:${port}`],
      ],
      180_000,
    );
    vm.host = host2;

    // What QEMU on kvm-b really has.
    const nodes = JSON.parse(
      (
        await execa("virsh", [
          ...["-c", host2.uri, "qemu-monitor-command", vm.name],
          JSON.stringify({ execute: "query-named-block-nodes", arguments: { flat: true } }),
        ])
      ).stdout,
    ).return as { drv: string; file: string; "dirty-bitmaps"?: { name: string; recording: boolean }[] }[];
    const carried = (target: string) =>
      nodes.some(
        (n) =>
          n.file.startsWith(join(dst, `${target}.`)) &&
          (n["dirty-bitmaps"] ?? []).some((x) => x.name === cp && x.recording),
      );
    console.log(`[ledger-copy] QEMU on kvm-b carried: vda ${carried("vda")}, vdb ${carried("vdb")}`);

    await eventually(
      "reconciled on kvm-b",
      async () =>
        (await chain()).disks.every(
          (d) => (d.next === "incremental" && d.lastHostId === "kvm-b") || d.next === "full",
        ),
      60_000,
    );
    const r = await chain();
    console.log(`[ledger-copy] ${r.disks.map((d) => d.summary).join(" | ")}`);
    for (const d of r.disks) {
      // the ledger says what QEMU carried, disk by disk
      expect(d.next, d.summary).toBe(carried(d.target) ? "incremental" : "full");
      if (d.next === "incremental") expect(d.lastHostId).toBe("kvm-b");
      else expect(d.summary).toMatch(new RegExp(`^${d.target}: will be read in full: .*missing`));
    }
    // QEMU carried qcow2's bitmap and could not carry raw's: only vdb loses its chain.
    expect(r.disks.map((d) => [d.target, d.next])).toEqual([
      ["vda", "incremental"],
      ["vdb", "full"],
    ]);

    await vm.writeRandom("/dev/vda", 0, 2 * MiB);
    await vm.writeRandom("/dev/vdb", 0, 2 * MiB);
    const incr = await backup();
    expect(incr).toMatchObject({ state: "succeeded", hostId: "kvm-b" });
    for (const d of r.disks) {
      if (d.next === "incremental") expect(incr.diskKinds[d.target]).toBe("incremental");
      else expect(incr.diskKinds[d.target]).toMatch(/^full: /);
    }
    expect(await restoreMatches(incr.snapshotId as string, "vda")).toBe(true);
    expect(await restoreMatches(incr.snapshotId as string, "vdb")).toBe(true);
    console.log(`[ledger-copy] test body ${Date.now() - t0} ms`);
  });
});
