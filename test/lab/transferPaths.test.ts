import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { eventually } from "../support/coordinatorHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { sha256 } from "./support/LabVm.js";
import { restoredDiskHash } from "./support/restoredDiskHash.js";
import { TransferLab } from "./support/TransferLab.js";

/**
 * Transfer paths end to end (docs/transfer-paths.md), on real libvirt + QEMU: the coordinator picks
 * LAN-free for a VM whose host reaches the repository and the mover for one whose host does not;
 * the mover reads the VM host's export over TCP with TLS across a veth pair.
 */
const MiB = 1024 * 1024;
const L = new TransferLab();
let vmA: LabVm;
let vmB: LabVm;

const checkpoints = async (vm: LabVm) =>
  (await vm.virsh(["checkpoint-list", vm.name, "--name"])).stdout
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();
const activeJob = async (vm: LabVm) =>
  (await vm.virsh(["domjobinfo", vm.name])).stdout.match(/Job type:\s+(\S+)/)?.[1] ?? "";

beforeAll(async () => {
  await L.start({ retryBaseMs: 4_000, retryMaxMs: 6_000 });
  vmA = await L.lab.createVm({ label: "xfer-a", disks: [{ kind: "blank", format: "qcow2", sizeMiB: 128 }] });
  vmB = await L.lab.createVm({
    label: "xfer-b",
    host: L.host2,
    disks: [{ kind: "blank", format: "qcow2", sizeMiB: 128 }],
  });
  await Promise.all([vmA.boot(), vmB.boot()]);
  await eventually(
    "both VMs in the inventory",
    async () => {
      const vms = (await L.c.admin().listVms({ hostId: "" })).vms;
      return vms.some((v) => v.name === vmA.name) && vms.some((v) => v.name === vmB.name);
    },
    30_000,
  );
  await L.policy("on-a", vmA.name);
  await L.policy("on-b", vmB.name);
}, 420_000);

afterAll(() => L.dispose(), 180_000);

describe("transfer paths", () => {
  it("repo show: kvm-a and mover-1 reach the SAN, kvm-b (own mount namespace) does not", async () => {
    const r = await L.c.admin().showRepository({ name: "san" });
    const by = Object.fromEntries(r.reach.map((x) => [x.hostId, x]));
    expect(by["kvm-a"]?.reachable).toBe(true);
    expect(by["mover-1"]?.reachable).toBe(true);
    expect(by["kvm-b"]?.reachable).toBe(false);
    expect(by["mover-1"]?.writeMibS).toBeGreaterThan(0);
    expect(r.repository?.id).toMatch(/^[0-9a-f]{32}$/);
  });

  it("a VM on a host that reaches the repository goes LAN-free, chosen and recorded", async () => {
    await vmA.writeRandom("/dev/vda", 0, 8 * MiB);
    const job = await L.backup(vmA.name, "on-a", BackupMode.BACKUP_MODE_FULL);
    expect(job.state, job.reason).toBe("succeeded");
    expect(job.transfer?.path).toBe("lan-free");
    expect(job.transfer?.readerHostId).toBe("kvm-a");
    expect(job.transfer?.reason).toMatch(/^lan-free: kvm-a reaches repository san/);
    expect(await restoredDiskHash(L.c, job.snapshotId as string, "vda", "kvm-a")).toBe(
      await vmA.deviceHash("/dev/vda"),
    );
  }, 300_000);

  it("a VM on a host that does not: the mover reads over NBD-TLS; restore is byte-identical; the next run is incremental", async () => {
    await vmB.writeRandom("/dev/vda", 0, 16 * MiB);
    const full = await L.backup(vmB.name, "on-b", BackupMode.BACKUP_MODE_FULL);
    expect(full.state, full.reason).toBe("succeeded");
    expect(full.transfer?.path).toBe("network");
    expect(full.transfer?.readerHostId).toBe("mover-1");
    expect(full.transfer?.reason).toMatch(/^network via mover-1: kvm-b cannot reach repository san/);
    expect(await restoredDiskHash(L.c, full.snapshotId as string, "vda", "kvm-a")).toBe(
      await vmB.deviceHash("/dev/vda"),
    );
    // The checkpoint was kept on the VM host (the seal reached it through FinishExport).
    expect((await checkpoints(vmB)).length).toBeGreaterThan(0);

    await vmB.writeRandom("/dev/vda", 32 * MiB, 2 * MiB);
    const incr = await L.backup(vmB.name, "on-b");
    expect(incr.state, incr.reason).toBe("succeeded");
    expect(incr.transfer?.path).toBe("network");
    expect(incr.diskKinds?.vda).toBe("incremental");
    const s = await L.c.running.ctx.store.getSnapshot(incr.snapshotId as string);
    const read = (JSON.parse(s?.manifestJson ?? "{}") as { stats: { bytesRead: number } }).stats.bytesRead;
    expect(read).toBeLessThan(8 * MiB);
    expect(await restoredDiskHash(L.c, incr.snapshotId as string, "vda", "kvm-a")).toBe(
      await vmB.deviceHash("/dev/vda"),
    );
  }, 400_000);

  it("no mover reaches it: the job fails at once, naming the repository and who reaches it; nothing was touched", async () => {
    await L.policy("on-b-nomover", vmB.name, "movers: {names: [mover-9]}\n");
    const before = await checkpoints(vmB);
    const job = await L.backup(vmB.name, "on-b-nomover");
    expect(job.state).toBe("failed");
    expect(job.attempt).toBe(1);
    expect(job.reason).toMatch(/repository san/);
    expect(job.reason).toMatch(/kvm-a/);
    expect(await checkpoints(vmB)).toEqual(before);
    expect(await vmB.fsfreezeStatus()).toBe("thawed");
    await L.c.admin().deletePolicy({ name: "on-b-nomover" });
  }, 120_000);

  it("a plaintext NBD connection to a network export is refused", async () => {
    // A slow read keeps the export up while a plaintext client knocks.
    await L.policy("on-b-slow", vmB.name, "bandwidth: 1MiB/s\n");
    await vmB.writeRandom("/dev/vda", 0, 24 * MiB);
    const { jobId } = await L.c.admin().backupNow({
      vm: vmB.name,
      policy: "on-b-slow",
      mode: BackupMode.BACKUP_MODE_FULL,
    });
    await exportUp(vmB);
    expect((await L.c.running.ctx.store.getJob(jobId))?.transfer?.path).toBe("network");
    const port = await exportPort(vmB);
    const plain = await L.ns.run("nbdinfo", [`nbd://${L.ns.hostAddress}:${port}/vda`], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    expect(plain.exitCode).not.toBe(0);
    expect(`${plain.stdout}${plain.stderr}`).toMatch(/TLS/i);
    await L.c.admin().cancelJob({ jobId });
    await eventually(
      "the export is ended",
      async () => ((await activeJob(vmB)) === "None" ? true : undefined),
      60_000,
    );
    await L.c.admin().deletePolicy({ name: "on-b-slow" });
  }, 300_000);

  it("mover killed mid-read: export ended, checkpoint rolled back, guest thawed; the retry succeeds and the chain continues", async () => {
    await L.policy("on-b-kill", vmB.name, "bandwidth: 2MiB/s\n");
    const before = await checkpoints(vmB);
    await vmB.writeRandom("/dev/vda", 40 * MiB, 24 * MiB);
    const { jobId } = await L.c.admin().backupNow({
      vm: vmB.name,
      policy: "on-b-kill",
      mode: BackupMode.BACKUP_MODE_INCREMENTAL,
    });
    await exportUp(vmB);
    // The mover is reading (throttled to 2 MiB/s, so for several seconds) when it dies.
    await new Promise((r) => setTimeout(r, 1500));
    await L.mover.kill();
    // The VM host ends its half once the coordinator tells it the reader is gone.
    await eventually(
      "the libvirt job ended and the new checkpoint removed",
      async () =>
        (await activeJob(vmB)) === "None" && sameList(await checkpoints(vmB), before) ? true : undefined,
      60_000,
    );
    expect(await vmB.fsfreezeStatus()).toBe("thawed");
    await L.mover.start();
    const job = await eventually(
      "the job ends",
      async () => {
        const j = await L.c.running.ctx.store.getJob(jobId);
        return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
      },
      300_000,
    );
    expect(job.state, job.reason).toBe("succeeded");
    expect(job.attempt).toBeGreaterThan(1);
    expect(job.diskKinds?.vda).toBe("incremental");
    expect(await restoredDiskHash(L.c, job.snapshotId as string, "vda", "kvm-a")).toBe(
      await vmB.deviceHash("/dev/vda"),
    );
    await L.c.admin().deletePolicy({ name: "on-b-kill" });
  }, 600_000);

  it("an offline VM goes over the network path too (qemu-nbd with TLS)", async () => {
    await vmB.writeRandom("/dev/vda", 0, 4 * MiB);
    await vmB.shutdown();
    const job = await L.backup(vmB.name, "on-b");
    expect(job.state, job.reason).toBe("succeeded");
    expect(job.transfer?.path).toBe("network");
    const image = await vmB.readImage("vda", 0, 128 * MiB);
    expect(await restoredDiskHash(L.c, job.snapshotId as string, "vda", "kvm-a")).toBe(sha256(image));
  }, 300_000);
});

/** Waits until libvirt runs a backup job (the pull export is up) on the VM. */
async function exportUp(vm: LabVm): Promise<void> {
  await eventually(
    `a backup job on ${vm.name}`,
    async () => {
      const job = await activeJob(vm);
      return job && job !== "None" ? true : undefined;
    },
    120_000,
  );
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The TCP port of the domain's running pull-backup export (libvirt's backup XML). */
async function exportPort(vm: LabVm): Promise<number> {
  const xml = (await vm.virsh(["backup-dumpxml", vm.name])).stdout;
  const port = Number(/<server[^>]*port=['"](\d+)['"]/.exec(xml)?.[1]);
  if (!port) throw new Error(`no TCP export in the backup XML: ${xml}`);
  return port;
}
