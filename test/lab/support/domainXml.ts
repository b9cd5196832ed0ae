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
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&apos;");

/** Domain XML for the tiny direct-boot guest (q35, virtio disks, optional guest agent channel). */
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
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${esc(spec.guest.vmlinux)}</kernel>
    <initrd>${esc(spec.guest.initrd)}</initrd>
    <cmdline>console=ttyS0 loglevel=4 panic=-1</cmdline>
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
    <memballoon model='none'/>
    <panic model='isa'/>
  </devices>
</domain>
`;
}
