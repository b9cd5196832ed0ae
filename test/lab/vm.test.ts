import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LabVm, sha256 } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";

const MiB = 1024 * 1024;

describe("lab VM with a real guest agent", () => {
  const lab = new Lab();
  let vm: LabVm;

  beforeAll(async () => {
    vm = await lab.createVm({
      label: "vm",
      disks: [
        { kind: "ext4-data" },
        { kind: "blank", format: "qcow2", sizeMiB: 256 },
        { kind: "blank", format: "raw", sizeMiB: 64 },
      ],
    });
    const t = Date.now();
    await vm.boot(120_000);
    console.log(`[lab] ${vm.name} agent ready ${Date.now() - t} ms after start`);
  });
  afterAll(() => lab.dispose());

  it("boots and answers guest-ping and guest-exec", async () => {
    expect(await vm.state()).toBe("running");
    expect(await vm.pingAgent()).toBe(true);
    const r = await vm.exec(["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    expect(r).toEqual({ exitCode: 3, stdout: "hello\n", stderr: "oops\n" });
    const mounts = await vm.sh("cat /proc/mounts");
    expect(mounts).toMatch(/^\/dev\/vda \/data ext4/m);
    const blocks = await vm.sh("ls /sys/block");
    expect(blocks.split(/\s+/)).toEqual(expect.arrayContaining(["vda", "vdb", "vdc"]));
  });

  it("writes and reads patterns and files in the guest", async () => {
    await vm.writePattern("/dev/vdb", 8 * MiB, MiB, 0xab);
    expect(await vm.hashRange("/dev/vdb", 8 * MiB, MiB)).toBe(sha256(Buffer.alloc(MiB, 0xab)));
    const h = await vm.writeRandom("/dev/vdc", 4 * MiB, 64 * 1024);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toBe(sha256(Buffer.alloc(64 * 1024)));
    await vm.writeFile("/data/hello.txt", "cairn lab\n");
    expect(await vm.readFile("/data/hello.txt")).toBe("cairn lab\n");
  });

  it("freezes and thaws the guest filesystems", async () => {
    const frozen = await vm.fsfreeze();
    try {
      expect(frozen).toBeGreaterThanOrEqual(1); // /data (ext4)
      expect(await vm.fsfreezeStatus()).toBe("frozen");
    } finally {
      await vm.fsthaw();
    }
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    // The filesystem takes writes again after the thaw.
    await vm.writeFile("/data/after-thaw.txt", "ok");
  });

  it("guest writes are in the disk images after a clean shutdown", async () => {
    await vm.writePattern("/dev/vdb", 100 * MiB, 2 * MiB, 0x5a);
    await vm.writePattern("/dev/vdc", 0, MiB, 0x33);
    const t = Date.now();
    await vm.shutdown(60_000);
    console.log(`[lab] clean shutdown took ${Date.now() - t} ms`);
    expect(await vm.readImage("vdb", 100 * MiB, 2 * MiB)).toEqual(Buffer.alloc(2 * MiB, 0x5a));
    expect(await vm.readImage("vdb", 8 * MiB, MiB)).toEqual(Buffer.alloc(MiB, 0xab));
    expect(await vm.readImage("vdc", 0, MiB)).toEqual(Buffer.alloc(MiB, 0x33));
    // Untouched regions stay zero.
    expect(await vm.readImage("vdb", 50 * MiB, MiB)).toEqual(Buffer.alloc(MiB));
  });

  it("a crash (SIGKILL of QEMU) leaves the domain shut off as crashed", async () => {
    await vm.boot(120_000);
    await vm.crash();
    const reason = await vm.virsh(["domstate", vm.name, "--reason"]);
    expect(reason.stdout).toMatch(/shut off \((crashed|destroyed)\)/);
  });
});
