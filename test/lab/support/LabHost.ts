/** A libvirt daemon the lab drives: the machine's own, or the second host in its namespaces. */
export interface LabHost {
  name: string;
  /** libvirt URI for virsh -c. */
  uri: string;
  /** Where this daemon keeps QEMU pidfiles (…/run/libvirt/qemu), as seen from the lab. */
  qemuRunDir: string;
  /** Migration ports of this daemon's QEMUs, [min, max]. */
  migrationPorts: [number, number];
  /**
   * Network exports (docs/transfer-paths.md §5): the daemon's backup_tls_x509_cert_dir, and its
   * qemu.conf and pid file as the lab sees them (FileLibvirtTlsDir's options).
   */
  backupTls: { dir: string; qemuConfPath: string; daemonPidFile: string };
}

export const MAIN_HOST: LabHost = {
  name: "host1",
  uri: "qemu:///system",
  qemuRunDir: "/run/libvirt/qemu",
  migrationPorts: [49152, 49215],
  backupTls: {
    dir: "/var/lib/cairn-agent/backup-tls",
    qemuConfPath: "/etc/libvirt/qemu.conf",
    daemonPidFile: "/run/libvirtd.pid",
  },
};
