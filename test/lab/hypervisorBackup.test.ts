import { chmod, chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, inject } from "vitest";
import { VirshHypervisor } from "../../agent/src/hypervisor/VirshHypervisor.js";
import { hypervisorBackupContract } from "../support/hypervisorBackupContract.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";

const lab = new Lab();
let vm: LabVm;
let dir: string;

beforeAll(async () => {
  const root = join(inject("cairnLab").runRoot, "tmp");
  await mkdir(root, { recursive: true });
  dir = await mkdtemp(join(root, "hvb-"));
  // QEMU opens the scratch images libvirt creates here: the directory must be traversable.
  await chmod(dir, 0o711);
  await mkdir(join(dir, "nbd"));
  await mkdir(join(dir, "scratch"));
  // QEMU (libvirt-qemu:kvm) creates the NBD socket: it must own the directory.
  const ids = async (what: string, name: string) =>
    Number.parseInt((await run("getent", [what, name])).stdout.split(":")[2] ?? "", 10);
  await chown(join(dir, "nbd"), await ids("passwd", "libvirt-qemu"), await ids("group", "kvm"));
  vm = await lab.createVm({
    label: "hvb",
    disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 64 }],
  });
  await vm.start();
});
afterAll(async () => {
  await lab.dispose();
  await rm(dir, { recursive: true, force: true });
});

hypervisorBackupContract("VirshHypervisor on the lab's libvirt", () => ({
  hypervisor: new VirshHypervisor({ uri: "qemu:///system", callTimeoutMs: 60_000 }),
  domain: vm.name,
  disks: ["vda", "vdb"],
  socketDir: join(dir, "nbd"),
  scratchDir: join(dir, "scratch"),
}));
