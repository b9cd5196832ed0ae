import { describe, expect, it } from "vitest";
import type { DomainInfo } from "../../../../agent/src/hypervisor/DomainInfo.js";
import { parseDomainXml } from "../../../../agent/src/hypervisor/parseDomainXml.js";
import { planVmRestore, type VmRestoreRequest } from "../../../../agent/src/restore/planVmRestore.js";
import type { PoolInfo, RestoreHost } from "../../../../agent/src/restore/RestoreHost.js";
import type { SnapshotManifest } from "../../../../shared/src/repository/manifest/SnapshotManifest.js";

const UUID = "0b7e1c3a-1111-2222-3333-444455556666";
const NEW_UUID = "9d1f0e2a-aaaa-4bbb-8ccc-ddddeeeeffff";
const GiB = 1024 ** 3;
const xml = `<domain type='kvm'><name>web-1</name><uuid>${UUID}</uuid>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vms/web-1/vda.qcow2'/><target dev='vda'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg/web-1-vdb'/><target dev='vdb'/></disk>
  </devices></domain>`;

const manifest = (domainXml = xml): SnapshotManifest =>
  ({
    formatVersion: 1,
    id: "20261208T010000Z-0a1b2c3d",
    vm: { uuid: UUID, name: "web-1" },
    domainXml,
    disks: [],
    extra: {},
  }) as unknown as SnapshotManifest;

const disks = [
  { target: "vda", virtualSize: 2 * GiB, dataBytes: 300 * 1024 ** 2 },
  { target: "vdb", virtualSize: 1 * GiB, dataBytes: 10 * 1024 ** 2 },
];

/** An in-memory host: domains by name and uuid, paths that exist, free bytes, pools. */
function fakeHost(
  over: Partial<{
    domains: DomainInfo[];
    paths: string[];
    free: number;
    pools: PoolInfo[];
    machines: string[];
    currentXml: string;
  }> = {},
) {
  const domains = over.domains ?? [];
  const paths = new Set(over.paths ?? ["/vms/web-1", "/restore", "/usr/bin/qemu-system-x86_64"]);
  const asked: string[] = [];
  const host: RestoreHost = {
    domain: async (n) => domains.find((d) => d.name === n || d.uuid === n),
    inactiveXml: async () => over.currentXml ?? xml,
    machineTypes: async () => over.machines ?? ["pc-q35-7.2", "q35", "pc"],
    firmwares: async () => ["efi"],
    pool: async (n) => over.pools?.find((p) => p.name === n),
    freeBytes: async (dir) => {
      asked.push(dir);
      return over.free ?? 100 * GiB;
    },
    exists: async (p) => paths.has(p),
    createVolume: async () => {
      throw new Error("planning writes nothing");
    },
    deleteVolume: async () => {
      throw new Error("planning writes nothing");
    },
    define: async () => {
      throw new Error("planning writes nothing");
    },
    undefine: async () => {
      throw new Error("planning writes nothing");
    },
    start: async () => {
      throw new Error("planning writes nothing");
    },
    forgetCheckpoints: async () => {
      throw new Error("planning writes nothing");
    },
  };
  return { host, asked };
}

const request = (over: Partial<VmRestoreRequest> = {}): VmRestoreRequest => ({
  newName: "",
  destinationDir: "",
  format: "",
  pool: "",
  inPlace: false,
  ...over,
});
const plan = (req: Partial<VmRestoreRequest>, host = fakeHost().host, m = manifest()) =>
  planVmRestore(
    { manifest: m, request: request(req), disks, nvramDir: "/nv", swtpmStateDir: "/tpm", newUuid: NEW_UUID },
    host,
    AbortSignal.timeout(5_000),
  );
const shutOff: DomainInfo = {
  uuid: UUID,
  name: "web-1",
  state: "shutoff",
  persistent: true,
  disks: [],
  labels: {},
  hasGuestAgentChannel: false,
};

describe("planVmRestore: new domain", () => {
  it("defaults: <name>-restored, qcow2, the directory of the original's first file disk", async () => {
    const p = await plan({});
    expect([p.name, p.uuid, p.inPlace]).toEqual(["web-1-restored", NEW_UUID, false]);
    expect(p.disks.map((d) => [d.target, d.path, d.format, d.type])).toEqual([
      ["vda", "/vms/web-1/web-1-restored-vda.qcow2", "qcow2", "file"],
      ["vdb", "/vms/web-1/web-1-restored-vdb.qcow2", "qcow2", "file"],
    ]);
    expect(parseDomainXml(p.xml ?? "").disks.map((d) => d.source)).toEqual(p.disks.map((d) => d.path));
  });

  it("named, raw, in another directory", async () => {
    const p = await plan({ newName: "web-2", destinationDir: "/restore", format: "raw" });
    expect(p.disks.map((d) => d.path)).toEqual(["/restore/web-2-vda.raw", "/restore/web-2-vdb.raw"]);
  });

  it("refuses a name that exists, a disk file that exists, a missing directory", async () => {
    const taken = fakeHost({ domains: [{ ...shutOff, name: "web-2", uuid: NEW_UUID }] }).host;
    await expect(plan({ newName: "web-2" }, taken)).rejects.toMatchObject({
      code: "already-exists",
      message: "a domain named web-2 exists on this host",
    });
    const file = fakeHost({ paths: ["/restore", "/restore/web-2-vdb.qcow2"] }).host;
    await expect(plan({ newName: "web-2", destinationDir: "/restore" }, file)).rejects.toMatchObject({
      code: "already-exists",
      message: "/restore/web-2-vdb.qcow2 exists",
    });
    await expect(plan({ destinationDir: "/nowhere" })).rejects.toMatchObject({ code: "not-found" });
    await expect(plan({ destinationDir: "relative" })).rejects.toMatchObject({ code: "invalid-argument" });
  });

  it("room: qcow2 needs the data bytes (plus metadata), raw the whole disks", async () => {
    const room = (free: number) => fakeHost({ free }).host;
    // 310 MiB of data, 3 GiB of disks.
    await expect(plan({ destinationDir: "/restore" }, room(400 * 1024 ** 2))).resolves.toBeDefined();
    await expect(plan({ destinationDir: "/restore" }, room(300 * 1024 ** 2))).rejects.toMatchObject({
      code: "failed-precondition",
      message: expect.stringMatching(
        /^directory \/restore has 300.0 MiB free; the restore needs 3\d\d\.\d MiB$/,
      ),
    });
    await expect(plan({ destinationDir: "/restore", format: "raw" }, room(2 * GiB))).rejects.toMatchObject({
      message: "directory /restore has 2048.0 MiB free; the restore needs 3072.0 MiB",
    });
  });

  it("refuses a machine type, a loader or an emulator the host lacks", async () => {
    await expect(plan({}, fakeHost({ machines: ["pc"] }).host)).rejects.toMatchObject({
      code: "failed-precondition",
      message: "this host's QEMU has no machine type pc-q35-7.2 for x86_64",
    });
    const uefi = xml.replace("</os>", "<loader type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os>");
    await expect(plan({}, fakeHost().host, manifest(uefi))).rejects.toMatchObject({
      message: "firmware /usr/share/OVMF/OVMF_CODE.fd (the domain's <loader>) does not exist on this host",
    });
    await expect(plan({}, fakeHost({ paths: ["/vms/web-1"] }).host)).rejects.toMatchObject({
      message: "emulator /usr/bin/qemu-system-x86_64 does not exist on this host",
    });
  });

  it("a hostile or unusable name is refused; a default name that is unusable asks for one", async () => {
    await expect(plan({ newName: "../x" })).rejects.toMatchObject({ code: "invalid-argument" });
    const odd = manifest();
    odd.vm.name = "web 1";
    await expect(plan({}, fakeHost().host, odd)).rejects.toMatchObject({
      code: "invalid-argument",
      hint: expect.stringMatching(/--name/),
    });
  });

  it("an NVRAM gets <nvramDir>/<name>_VARS.fd, refused when that file exists", async () => {
    const uefi = xml.replace("<os>", "<os firmware='efi'>");
    const p = await plan({ newName: "web-2" }, fakeHost().host, manifest(uefi));
    expect(p.nvram).toEqual({ path: "/nv/web-2_VARS.fd", file: undefined });
    expect(p.xml).toContain("<nvram>/nv/web-2_VARS.fd</nvram>");
    const there = fakeHost({
      paths: ["/vms/web-1", "/usr/bin/qemu-system-x86_64", "/nv/web-2_VARS.fd"],
    }).host;
    await expect(plan({ newName: "web-2" }, there, manifest(uefi))).rejects.toMatchObject({
      code: "already-exists",
    });
  });
});

describe("planVmRestore: pools", () => {
  const dirPool: PoolInfo = {
    name: "images",
    type: "dir",
    active: true,
    path: "/pool",
    availableBytes: 50 * GiB,
  };
  const lvm: PoolInfo = {
    name: "vg",
    type: "logical",
    active: true,
    path: "/dev/vg",
    availableBytes: 50 * GiB,
  };
  it("dir pool: volumes <name>-<target>.<format>; logical pool: raw block volumes", async () => {
    const host = fakeHost({ pools: [dirPool, lvm] }).host;
    const d = await plan({ newName: "web-2", pool: "images" }, host);
    expect(d.disks.map((x) => [x.path, x.type, x.format, x.volume?.name])).toEqual([
      ["/pool/web-2-vda.qcow2", "file", "qcow2", "web-2-vda.qcow2"],
      ["/pool/web-2-vdb.qcow2", "file", "qcow2", "web-2-vdb.qcow2"],
    ]);
    const l = await plan({ newName: "web-2", pool: "vg" }, host);
    expect(l.disks.map((x) => [x.path, x.type, x.format])).toEqual([
      ["/dev/vg/web-2-vda", "block", "raw"],
      ["/dev/vg/web-2-vdb", "block", "raw"],
    ]);
    expect(l.xml).toContain('<source dev="/dev/vg/web-2-vda"/>');
    await expect(plan({ newName: "web-2", pool: "vg", format: "qcow2" }, host)).rejects.toMatchObject({
      code: "invalid-argument",
    });
  });

  it("refuses a missing, inactive, unsupported or full pool, and a pool with a directory", async () => {
    const host = fakeHost({
      pools: [
        { ...dirPool, name: "off", active: false },
        { ...dirPool, name: "iscsi", type: "iscsi" },
        { ...dirPool, name: "full", availableBytes: GiB / 10 },
      ],
    }).host;
    await expect(plan({ pool: "nope" }, host)).rejects.toMatchObject({
      code: "not-found",
      message: "storage pool nope does not exist on this host",
    });
    await expect(plan({ pool: "off" }, host)).rejects.toMatchObject({
      message: "storage pool off is not active",
    });
    await expect(plan({ pool: "iscsi" }, host)).rejects.toMatchObject({
      message: expect.stringMatching(/type iscsi/),
    });
    await expect(plan({ pool: "full" }, host)).rejects.toMatchObject({
      message: expect.stringMatching(/^pool full has/),
    });
    await expect(plan({ pool: "full", destinationDir: "/restore" }, host)).rejects.toMatchObject({
      code: "invalid-argument",
    });
  });
});

describe("planVmRestore: in place", () => {
  it("over the shut-off original: its disks where they are, in their formats; the definition kept", async () => {
    const { host, asked } = fakeHost({ domains: [shutOff] });
    const p = await plan({ inPlace: true }, host);
    expect([p.name, p.uuid, p.inPlace, p.xml]).toEqual(["web-1", UUID, true, undefined]);
    expect(p.disks.map((d) => [d.path, d.format, d.type, d.overwrite])).toEqual([
      ["/vms/web-1/vda.qcow2", "qcow2", "file", true],
      ["/dev/vg/web-1-vdb", "raw", "block", true],
    ]);
    expect(asked).toEqual(["/vms/web-1"]); // room for the replacing file beside the old one
  });

  it("refuses an absent or running original, a disk it no longer has, new names, another format", async () => {
    await expect(plan({ inPlace: true })).rejects.toMatchObject({ code: "not-found" });
    const running = fakeHost({ domains: [{ ...shutOff, state: "running" }] }).host;
    await expect(plan({ inPlace: true }, running)).rejects.toMatchObject({
      code: "failed-precondition",
      message: "domain web-1 is running; an in-place restore needs it shut off",
    });
    const fewer = fakeHost({
      domains: [shutOff],
      currentXml: xml.replace(/<disk type='block'[\s\S]*?<\/disk>/, ""),
    }).host;
    await expect(plan({ inPlace: true }, fewer)).rejects.toMatchObject({
      message: "domain web-1 has no local disk vdb now",
    });
    const host = fakeHost({ domains: [shutOff] }).host;
    await expect(plan({ inPlace: true, newName: "x" }, host)).rejects.toMatchObject({
      code: "invalid-argument",
    });
    await expect(plan({ inPlace: true, format: "raw" }, host)).rejects.toMatchObject({
      message: "disk vda is qcow2 in the definition; in place it stays qcow2",
    });
  });
});
