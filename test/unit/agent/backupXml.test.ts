import { describe, expect, it } from "vitest";
import { checkpointXml, pullBackupXml } from "../../../agent/src/hypervisor/backupXml.js";
import { parseBackupJobXml, parseCheckpointXml } from "../../../agent/src/hypervisor/parseCheckpointXml.js";

describe("backup and checkpoint XML", () => {
  it("pull backup: incremental base, unix socket, scratch files, per-disk opt-out", () => {
    const xml = pullBackupXml({
      incremental: "cairn-2",
      socketPath: "/run/cairn/job 1/nbd.sock",
      disks: [
        { target: "vda", backup: true, scratchPath: "/var/lib/cairn/scratch/vda.qcow2" },
        { target: "vdb", backup: true, incremental: "cairn-1", scratchPath: "/s/vdb.qcow2" },
        { target: "vdc", backup: false },
      ],
    });
    expect(xml).toContain("<incremental>cairn-2</incremental>");
    expect(xml).toContain("<server transport='unix' socket='/run/cairn/job 1/nbd.sock'/>");
    expect(xml).toContain(
      "<disk name='vda' backup='yes' type='file'><scratch file='/var/lib/cairn/scratch/vda.qcow2'/></disk>",
    );
    expect(xml).toContain("backupmode='incremental' incremental='cairn-1'");
    expect(xml).toContain("<disk name='vdc' backup='no'/>");
  });

  it("refuses names that could break out of the XML", () => {
    expect(() => pullBackupXml({ incremental: "a'/><x", socketPath: "/s", disks: [] })).toThrow(
      /invalid checkpoint name/,
    );
    expect(() => checkpointXml({ name: "ok", disks: [{ target: "vd<a", bitmap: true }] })).toThrow(
      /invalid disk name/,
    );
    expect(pullBackupXml({ socketPath: "/a'b&c", disks: [] })).toContain("socket='/a&apos;b&amp;c'");
  });

  it("pull backup on TCP: a TLS-only server element, exactly one transport", () => {
    const xml = pullBackupXml({
      tcp: { host: "10.222.7.1", port: 10809, tls: true },
      disks: [{ target: "vda", backup: true, scratchPath: "/s/vda.qcow2" }],
    });
    expect(xml).toContain("<server transport='tcp' name='10.222.7.1' port='10809' tls='yes'/>");
    expect(xml).not.toContain("transport='unix'");
    expect(pullBackupXml({ tcp: { host: "kvm-01.example", port: 65535, tls: true }, disks: [] })).toContain(
      "name='kvm-01.example' port='65535' tls='yes'",
    );
    expect(pullBackupXml({ tcp: { host: "fd00::1", port: 1024, tls: true }, disks: [] })).toContain(
      "name='fd00::1'",
    );
    const tcp = { host: "10.0.0.1", port: 10809, tls: true } as const;
    expect(() => pullBackupXml({ socketPath: "/s", tcp, disks: [] })).toThrow(/exactly one/);
    expect(() => pullBackupXml({ disks: [] })).toThrow(/exactly one/);
    expect(() => pullBackupXml({ tcp: { ...tcp, tls: false as true }, disks: [] })).toThrow(/tls: true/);
    expect(() => pullBackupXml({ tcp: { ...tcp, host: "a' b" }, disks: [] })).toThrow(/listen address/);
    expect(() => pullBackupXml({ tcp: { ...tcp, port: 0 }, disks: [] })).toThrow(/invalid NBD port/);
    expect(() => pullBackupXml({ tcp: { ...tcp, port: 70000 }, disks: [] })).toThrow(/invalid NBD port/);
  });

  it("checkpoint: bitmap disks and excluded disks", () => {
    const xml = checkpointXml({
      name: "cairn-3",
      disks: [
        { target: "vda", bitmap: true },
        { target: "vdb", bitmap: false },
      ],
    });
    expect(xml).toContain("<name>cairn-3</name>");
    expect(xml).toContain("<disk name='vda' checkpoint='bitmap'/>");
    expect(xml).toContain("<disk name='vdb' checkpoint='no'/>");
  });

  it("parses libvirt's checkpoint-dumpxml", () => {
    const info = parseCheckpointXml(`<domaincheckpoint>
  <name>cp2</name>
  <parent><name>cp1</name></parent>
  <creationTime>1763800000</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='cp2' size='1048576'/>
    <disk name='vdb' checkpoint='no'/>
  </disks>
  <domain type='qemu'><name>x</name></domain>
</domaincheckpoint>`);
    expect(info).toMatchObject({
      name: "cp2",
      parent: "cp1",
      creationTime: 1763800000,
      bitmaps: { vda: "cp2" },
    });
    expect(
      parseCheckpointXml(
        "<domaincheckpoint><name>cp1</name><disks><disk name='vda' checkpoint='bitmap'/></disks></domaincheckpoint>",
      ).parent,
    ).toBeUndefined();
  });

  it("parses libvirt's backup-dumpxml of a running incremental pull backup", () => {
    const job = parseBackupJobXml(`<domainbackup mode='pull'>
  <incremental>cp1</incremental>
  <server transport='unix' socket='/tmp/n.sock'/>
  <disks>
    <disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='cp1' exportname='vda' exportbitmap='backup-vda'>
      <driver type='qcow2'/><scratch file='/s/vda.qcow2'/>
    </disk>
    <disk name='vdb' backup='no'/>
  </disks>
</domainbackup>`);
    expect(job).toEqual({
      incremental: "cp1",
      socket: "/tmp/n.sock",
      disks: [{ target: "vda", exportName: "vda", exportBitmap: "backup-vda", incremental: "cp1" }],
    });
  });
});
