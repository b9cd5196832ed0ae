/** A libvirt daemon the lab drives: the machine's own, or the second host in its namespaces. */
export interface LabHost {
  name: string;
  /** libvirt URI for virsh -c. */
  uri: string;
  /** Where this daemon keeps QEMU pidfiles (…/run/libvirt/qemu), as seen from the lab. */
  qemuRunDir: string;
  /** Migration ports of this daemon's QEMUs, [min, max]. */
  migrationPorts: [number, number];
}

export const MAIN_HOST: LabHost = {
  name: "host1",
  uri: "qemu:///system",
  qemuRunDir: "/run/libvirt/qemu",
  migrationPorts: [49152, 49215],
};
