import { describe, expect, it } from "vitest";
import { parseVmConfigRefs } from "../../../agent/src/vmconfig/parseVmConfigRefs.js";

const opts = { nvramDir: "/var/lib/libvirt/qemu/nvram" };
const dom = (os: string, devices = "") =>
  `<domain type='kvm'><name>web-1</name><uuid>0b7e1c3a-1111-2222-3333-444455556666</uuid><os>${os}</os><devices>${devices}</devices></domain>`;

describe("parseVmConfigRefs", () => {
  it("reads the NVRAM path and an emulated TPM from a UEFI domain (libvirt's usual form)", () => {
    const xml = dom(
      `<type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
       <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
       <nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/web-1_VARS.fd</nvram>
       <boot dev='hd'/>`,
      `<disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda'/></disk>
       <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>`,
    );
    expect(parseVmConfigRefs(xml, opts)).toEqual({
      name: "web-1",
      uuid: "0b7e1c3a-1111-2222-3333-444455556666",
      nvram: { kind: "file", path: "/var/lib/libvirt/qemu/nvram/web-1_VARS.fd", derived: false },
      tpms: [{ kind: "emulator", version: "2.0", encrypted: false }],
    });
  });

  it("reads <nvram type='file'><source file/> and an explicit, encrypted swtpm state directory", () => {
    const r = parseVmConfigRefs(
      dom(
        "<nvram type='file'><source file='/srv/nv/x.fd'/></nvram>",
        `<tpm model='tpm-tis'><backend type='emulator' version='1.2'>
           <encryption secret='6dd3e4a5-1d76-44ce-961f-f119f5aad935'/>
           <source type='dir' path='/srv/tpm/x'/>
         </backend></tpm>`,
      ),
      opts,
    );
    expect(r.nvram).toEqual({ kind: "file", path: "/srv/nv/x.fd", derived: false });
    expect(r.tpms).toEqual([{ kind: "emulator", version: "1.2", stateDir: "/srv/tpm/x", encrypted: true }]);
  });

  it("a network NVRAM and a passthrough TPM are recognised but not local state", () => {
    const r = parseVmConfigRefs(
      dom(
        "<nvram type='network'><source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-nopool/0'/></nvram>",
        "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>",
      ),
      opts,
    );
    expect(r.nvram).toMatchObject({ kind: "unsupported", reason: /network/ });
    expect(r.tpms).toEqual([{ kind: "unsupported", backend: "passthrough" }]);
  });

  it("firmware='efi' without an <nvram> is libvirt's default path; a BIOS domain has neither", () => {
    expect(parseVmConfigRefs(dom("").replace("<os>", "<os firmware='efi'>"), opts).nvram).toEqual({
      kind: "file",
      path: "/var/lib/libvirt/qemu/nvram/web-1_VARS.fd",
      derived: true,
    });
    const bios = parseVmConfigRefs(dom("<type>hvm</type><kernel>/boot/vmlinux</kernel>"), opts);
    expect(bios.nvram).toBeUndefined();
    expect(bios.tpms).toEqual([]);
  });

  it("rejects a document that is not a domain", () => {
    expect(() => parseVmConfigRefs("<network/>", opts)).toThrow(/no <domain> element/);
  });
});
