import { describe, expect, it } from "vitest";
import { parseDomainXml } from "../../../../agent/src/hypervisor/parseDomainXml.js";
import { rewriteDomainXml } from "../../../../agent/src/restore/rewriteDomainXml.js";
import { parseVmConfigRefs } from "../../../../agent/src/vmconfig/parseVmConfigRefs.js";

const ORIGINAL_UUID = "0b7e1c3a-1111-2222-3333-444455556666";
const NEW_UUID = "9d1f0e2a-aaaa-4bbb-8ccc-ddddeeeeffff";

const xml = `<domain type='kvm'>
  <name>web-1</name>
  <uuid>${ORIGINAL_UUID}</uuid>
  <metadata><cairn:labels xmlns:cairn="https://cairn.dev/xmlns/libvirt/1"><cairn:label name="tier">gold</cairn:label></cairn:labels></metadata>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/web-1-data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/web-1-scratch.img'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/iso/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
      <target dev='vnet7'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cd'/>
      <source bridge='br0'/>
    </interface>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'><source type='dir' path='/srv/tpm/web-1'/></backend></tpm>
    <serial type='pty'><log file='/var/log/web-1-console.log' append='off'/><target port='0'/></serial>
    <!-- kept as it was -->
  </devices>
</domain>`;

const disks = new Map([
  ["vda", { type: "file" as const, path: "/restore/web-2-vda.qcow2", format: "qcow2" as const }],
  ["vdb", { type: "file" as const, path: "/restore/web-2-vdb.raw", format: "raw" as const }],
]);
const rewrite = (over: Partial<Parameters<typeof rewriteDomainXml>[1]> = {}) =>
  rewriteDomainXml(xml, {
    name: "web-2",
    uuid: NEW_UUID,
    disks,
    nvramPath: "/var/lib/libvirt/qemu/nvram/web-2_VARS.fd",
    ...over,
  });

describe("rewriteDomainXml: a restored domain shares nothing with its original", () => {
  it("new name and uuid, disks at their restored paths and formats, other disks dropped or emptied", () => {
    const r = rewrite();
    const p = parseDomainXml(r.xml);
    expect([p.name, p.uuid]).toEqual(["web-2", NEW_UUID]);
    expect(p.disks).toEqual([
      { target: "vda", format: "qcow2", source: "/restore/web-2-vda.qcow2", device: "disk" },
      { target: "vdb", format: "raw", source: "/restore/web-2-vdb.raw", device: "disk" },
      { target: "sda", format: "raw", source: "", device: "cdrom" },
    ]);
    expect(r.dropped).toEqual(["vdc"]);
    expect(r.emptied).toEqual(["sda"]);
    // The block disk became a file; the restored disk is flat; its driver keeps cache and discard.
    expect(r.xml).toMatch(
      /<disk type="file" device="disk">\s*<driver name="qemu" type="raw"\/>\s*<source file="\/restore\/web-2-vdb.raw"\/>/,
    );
    expect(r.xml).toContain('<driver name="qemu" type="qcow2" cache="none" discard="unmap"/>');
    expect(r.xml).not.toContain("backingStore");
    expect(r.xml).toContain('<boot order="1"/>');
    expect(r.xml).toContain("<!-- kept as it was -->");
    expect(p.labels).toEqual({ tier: "gold" });
    for (const old of [
      "web-1",
      ORIGINAL_UUID,
      "52:54:00:aa:bb",
      "vnet7",
      "/dev/vg0",
      "/srv/tpm",
      "debian.iso",
    ])
      expect(r.xml, old).not.toContain(old);
  });

  it("every interface loses its MAC (libvirt makes new ones) and keeps the rest", () => {
    const r = rewrite();
    expect(r.xml).not.toContain("<mac");
    expect(r.xml).toContain('<source network="default"/>');
    expect(r.xml).toContain('<source bridge="br0"/>');
    expect(r.xml).toContain('<model type="virtio"/>');
  });

  it("the NVRAM is the new domain's own file (template kept); a TPM's state goes to libvirt's default place", () => {
    const refs = parseVmConfigRefs(rewrite().xml, { nvramDir: "/var/lib/libvirt/qemu/nvram" });
    expect(refs.nvram).toEqual({
      kind: "file",
      path: "/var/lib/libvirt/qemu/nvram/web-2_VARS.fd",
      derived: false,
    });
    expect(refs.tpms).toEqual([{ kind: "emulator", version: "2.0", encrypted: false }]);
    expect(rewrite().xml).toContain('template="/usr/share/OVMF/OVMF_VARS.fd"');
    // libvirt ≥ 8.5's form, and a domain that names none (firmware='efi'): both get the new path.
    const typed = xml.replace(
      /<nvram template[^>]*>[^<]*<\/nvram>/,
      "<nvram type='file'><source file='/var/lib/libvirt/qemu/nvram/web-1_VARS.fd'/></nvram>",
    );
    const r2 = rewriteDomainXml(typed, {
      name: "web-2",
      uuid: NEW_UUID,
      disks,
      nvramPath: "/n/web-2_VARS.fd",
    });
    expect(parseVmConfigRefs(r2.xml, { nvramDir: "/x" }).nvram).toMatchObject({ path: "/n/web-2_VARS.fd" });
    const none = xml.replace(/<nvram template[^>]*>[^<]*<\/nvram>/, "");
    const r3 = rewriteDomainXml(none, {
      name: "web-2",
      uuid: NEW_UUID,
      disks,
      nvramPath: "/n/web-2_VARS.fd",
    });
    expect(parseVmConfigRefs(r3.xml, { nvramDir: "/x" }).nvram).toMatchObject({ path: "/n/web-2_VARS.fd" });
  });

  it("a uuid is added when the original names none; special characters in paths stay data", () => {
    const r = rewriteDomainXml(xml.replace(/<uuid>[^<]*<\/uuid>/, ""), {
      name: "web-2",
      uuid: NEW_UUID,
      disks: new Map([["vda", { type: "file", path: `/r/a"b&<c>'d.qcow2`, format: "qcow2" }]]),
    });
    const p = parseDomainXml(r.xml);
    expect(p.uuid).toBe(NEW_UUID);
    expect(p.disks[0]?.source).toBe(`/r/a"b&<c>'d.qcow2`);
  });

  it.each([
    ["-x", "an option to virsh"],
    ["../etc", "a path"],
    ["a/b", "a path"],
    ["a..b", "dots"],
    ["", "empty"],
    ["web 2", "a space"],
    ["x".repeat(101), "too long"],
    ["wéb", "not ASCII"],
  ])("hostile name %j (%s) is refused", (name) => {
    expect(() => rewrite({ name })).toThrow(expect.objectContaining({ code: "invalid-argument" }));
  });

  it("relative or multi-line paths and a bad uuid are refused", () => {
    expect(() =>
      rewrite({ disks: new Map([["vda", { type: "file", path: "rel.qcow2", format: "qcow2" }]]) }),
    ).toThrow(/not an absolute path/);
    expect(() => rewrite({ nvramPath: "/a\n/b" })).toThrow(/not an absolute path/);
    expect(() => rewrite({ uuid: "not-a-uuid" })).toThrow(/not a uuid/);
  });
});
