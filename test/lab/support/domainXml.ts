import type { GuestImage } from "./guest/buildGuest.js";

export interface DiskSpec {
  /** Path of the image on the host. */
  path: string;
  format: "qcow2" | "raw";
  target: string;
}

export interface DomainSpec {
  name: string;
  guest: GuestImage;
  disks: DiskSpec[];
  memoryMiB: number;
  /** Add the virtio-serial channel for qemu-guest-agent. */
  guestAgent: boolean;
  /** "qemu" (TCG) boots everywhere; "kvm" only where /dev/kvm can boot a stock kernel. */
  virtType: "qemu" | "kvm";
  consoleLog: string;
  /**
   * `<os><loader type='pflash'>` + `<nvram>`: a UEFI firmware and variable store. libvirt accepts
   * the definition without the loader file existing; such a domain is for offline backups only
   * (the direct-boot guest cannot start through a firmware that is not there).
   */
  uefi?: { loader: string; nvram: string };
  /** An emulated TPM 2.0 (libvirt runs swtpm; its state is /var/lib/libvirt/swtpm/<uuid>/). */
  tpm?: boolean;
  /** Default q35. With a TPM, q35 guests of this kernel lose their PCIe root-port devices: use "pc". */
  machine?: "q35" | "pc";
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&apos;");

/** Domain XML for the tiny direct-boot guest (q35, virtio disks, optional guest agent channel, UEFI vars, TPM). */
export function domainXml(spec: DomainSpec): string {
  const disks = spec.disks
    .map(
      (d) => `    <disk type='file' device='disk'>
      <driver name='qemu' type='${d.format}' cache='none' discard='unmap'/>
      <source file='${esc(d.path)}'/>
      <target dev='${d.target}' bus='virtio'/>
    </disk>`,
    )
    .join("\n");
  const cpu = spec.virtType === "kvm" ? "<cpu mode='host-passthrough'/>" : "";
  return `<domain type='${spec.virtType}'>
  <name>${esc(spec.name)}</name>
  <memory unit='MiB'>${spec.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='${spec.machine ?? "q35"}'>hvm</type>
    <kernel>${esc(spec.guest.vmlinux)}</kernel>
    <initrd>${esc(spec.guest.initrd)}</initrd>
    <cmdline>console=ttyS0 loglevel=4 panic=-1</cmdline>${
      spec.uefi
        ? `\n    <loader readonly='yes' type='pflash'>${esc(spec.uefi.loader)}</loader>\n    <nvram>${esc(spec.uefi.nvram)}</nvram>`
        : ""
    }
  </os>
  <features><acpi/><apic/></features>
  ${cpu}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${disks}
${
  spec.guestAgent
    ? "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>"
    : ""
}
    <serial type='pty'>
      <log file='${esc(spec.consoleLog)}' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>${spec.tpm ? "\n    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>" : ""}
    <panic model='isa'/>
  </devices>
</domain>
`;
}
