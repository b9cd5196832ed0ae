import { describe, expect, it } from "vitest";
import { CAIRN_METADATA_NS, parseDomainXml } from "../../../agent/src/hypervisor/parseDomainXml.js";

const xml = `<domain type='kvm' id='3'>
  <name>db-1</name>
  <uuid>0b7e1c3a-1111-2222-3333-444455556666</uuid>
  <metadata>
    <cairn:labels xmlns:cairn="${CAIRN_METADATA_NS}">
      <cairn:label name="tier">db</cairn:label>
      <cairn:label name="env">prod</cairn:label>
    </cairn:labels>
    <other:thing xmlns:other="https://example.com/x"><other:label name="nope">x</other:label></other:thing>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/img/db-1.qcow2' index='2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg/db-1-data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sda' bus='sata'/>
    </disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>`;

describe("parseDomainXml", () => {
  it("reads identity, disks of every kind, labels in Cairn's namespace only, and the agent channel", () => {
    expect(parseDomainXml(xml)).toEqual({
      uuid: "0b7e1c3a-1111-2222-3333-444455556666",
      name: "db-1",
      disks: [
        { target: "vda", format: "qcow2", source: "/img/db-1.qcow2", device: "disk" },
        { target: "vdb", format: "raw", source: "/dev/vg/db-1-data", device: "disk" },
        { target: "sda", format: "", source: "", device: "cdrom" },
      ],
      labels: { tier: "db", env: "prod" },
      hasGuestAgentChannel: true,
    });
  });

  it("a domain with a single disk and no channel", () => {
    const one = parseDomainXml(
      "<domain><name>a</name><uuid>u</uuid><devices><disk device='disk'><driver type='raw'/><source file='/a'/><target dev='vda'/></disk></devices></domain>",
    );
    expect(one.disks).toHaveLength(1);
    expect(one.hasGuestAgentChannel).toBe(false);
    expect(one.labels).toEqual({});
  });

  it("rejects a document that is not a domain", () => {
    expect(() => parseDomainXml("<network><name>x</name></network>")).toThrow(/no <domain> element/);
  });
});
