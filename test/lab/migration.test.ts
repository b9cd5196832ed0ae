import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabHost } from "./support/LabHost.js";
import { type LabVm, sha256 } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";

const MiB = 1024 * 1024;

describe("second host and live migration", () => {
  const lab = new Lab();
  let host2: LabHost;
  let vm: LabVm;

  beforeAll(async () => {
    const t = Date.now();
    host2 = await lab.startSecondHost();
    console.log(`[lab] second libvirtd up in ${Date.now() - t} ms`);
    vm = await lab.createVm({
      label: "mig",
      disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 128 }],
    });
    await vm.boot();
  });
  afterAll(() => lab.dispose());

  it("the second host is a separate libvirt with its own identity", async () => {
    const uuid = async (uri: string) =>
      /<uuid>([^<]+)<\/uuid>/.exec((await run("virsh", ["-c", uri, "capabilities"])).stdout)?.[1];
    expect(await uuid(host2.uri)).not.toBe(await uuid(lab.host1.uri));
    expect((await run("virsh", ["-c", host2.uri, "hostname"])).stdout.trim()).toBe("host2");
    const list = await run("virsh", ["-q", "-c", host2.uri, "list", "--all", "--name"]);
    expect(list.stdout).not.toContain(vm.name);
  });

  it("migrates a running VM there and back; the guest keeps running and its writes persist", async () => {
    await vm.writePattern("/dev/vdb", 10 * MiB, MiB, 0x11);
    const uptime = async () => Number.parseFloat((await vm.sh("cut -d' ' -f1 /proc/uptime")).trim());
    const before = await uptime();

    let t = Date.now();
    await vm.migrate(host2);
    console.log(`[lab] migrated to host2 in ${Date.now() - t} ms`);
    expect(await vm.state()).toBe("running");
    const onHost1 = await run("virsh", ["-q", "-c", lab.host1.uri, "list", "--all", "--name"]);
    expect(onHost1.stdout).not.toContain(vm.name);
    await vm.waitForAgent(30_000);
    expect(await uptime()).toBeGreaterThan(before); // same guest, not a reboot
    expect(await vm.hashRange("/dev/vdb", 10 * MiB, MiB)).toBe(sha256(Buffer.alloc(MiB, 0x11)));
    await vm.writePattern("/dev/vdb", 20 * MiB, MiB, 0x22);
    await vm.qemuPid(); // the QEMU pidfile lives in host2's private /run

    t = Date.now();
    await vm.migrate(lab.host1);
    console.log(`[lab] migrated back in ${Date.now() - t} ms`);
    await vm.waitForAgent(30_000);
    expect(await vm.hashRange("/dev/vdb", 20 * MiB, MiB)).toBe(sha256(Buffer.alloc(MiB, 0x22)));
    await vm.shutdown();
    expect(await vm.readImage("vdb", 10 * MiB, MiB)).toEqual(Buffer.alloc(MiB, 0x11));
    expect(await vm.readImage("vdb", 20 * MiB, MiB)).toEqual(Buffer.alloc(MiB, 0x22));
  });
});
