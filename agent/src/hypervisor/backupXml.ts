/**
 * libvirt <domainbackup> and <domaincheckpoint> documents for pull-mode backups.
 * Spec: https://libvirt.org/formatbackup.html, https://libvirt.org/formatcheckpoint.html
 */

export interface BackupDiskSpec {
  target: string;
  /** false: libvirt exports nothing for this disk. */
  backup: boolean;
  /** Scratch image for the point-in-time view (copy-before-write), in an agent-owned directory. */
  scratchPath?: string;
  /** Per-disk incremental base (libvirt ≥ 7.x): overrides the document's <incremental>. */
  incremental?: string;
}

export interface PullBackupSpec {
  /** Checkpoint to take the dirty bitmap from; absent for a full backup. */
  incremental?: string;
  /**
   * Unix socket of the NBD server libvirt starts (its directory must be writable by QEMU's user).
   * Exactly one of socketPath and tcp.
   */
  socketPath?: string;
  /**
   * TCP listener for a reader on another host (docs/transfer-paths.md §5). TLS is not optional:
   * QEMU takes its credentials from qemu.conf's backup_tls_x509_cert_dir when the backup begins.
   */
  tcp?: { host: string; port: number; tls: true };
  disks: BackupDiskSpec[];
}

export interface CheckpointSpec {
  name: string;
  description?: string;
  /** Disks that get a bitmap; every other disk of the domain is listed with checkpoint='no'. */
  disks: { target: string; bitmap: boolean }[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Names go into XML attributes and bitmap names: keep them to a safe alphabet. */
export function assertSafeName(kind: string, name: string): void {
  if (!NAME_RE.test(name)) {
    throw new Error(
      `invalid ${kind} name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-' (max 128)`,
    );
  }
}

export function escapeXmlAttr(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

export function pullBackupXml(spec: PullBackupSpec): string {
  if (spec.incremental) assertSafeName("checkpoint", spec.incremental);
  const lines = ["<domainbackup mode='pull'>"];
  if (spec.incremental) lines.push(`  <incremental>${spec.incremental}</incremental>`);
  lines.push(serverXml(spec), "  <disks>");
  for (const d of spec.disks) {
    assertSafeName("disk", d.target);
    if (!d.backup) {
      lines.push(`    <disk name='${d.target}' backup='no'/>`);
      continue;
    }
    if (d.incremental) assertSafeName("checkpoint", d.incremental);
    const mode = d.incremental ? ` backupmode='incremental' incremental='${d.incremental}'` : "";
    const scratch = d.scratchPath ? `<scratch file='${escapeXmlAttr(d.scratchPath)}'/>` : "";
    lines.push(`    <disk name='${d.target}' backup='yes' type='file'${mode}>${scratch}</disk>`);
  }
  lines.push("  </disks>", "</domainbackup>");
  return `${lines.join("\n")}\n`;
}

function serverXml(spec: PullBackupSpec): string {
  if ((spec.socketPath === undefined) === (spec.tcp === undefined)) {
    throw new Error("pull backup: give exactly one of socketPath and tcp");
  }
  if (spec.socketPath !== undefined) {
    return `  <server transport='unix' socket='${escapeXmlAttr(spec.socketPath)}'/>`;
  }
  const { host, port, tls } = spec.tcp!;
  // Plaintext network exports do not exist (§5): refuse rather than silently serve without TLS.
  if (tls !== true) throw new Error("pull backup over TCP needs tls: true");
  if (!HOST_RE.test(host)) throw new Error(`invalid NBD listen address ${JSON.stringify(host)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid NBD port ${port}`);
  return `  <server transport='tcp' name='${escapeXmlAttr(host)}' port='${port}' tls='yes'/>`;
}

/** An IPv4/IPv6 literal or a DNS name: what QEMU's inet socket address accepts as a host. */
const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/;

export function checkpointXml(spec: CheckpointSpec): string {
  assertSafeName("checkpoint", spec.name);
  const lines = ["<domaincheckpoint>", `  <name>${spec.name}</name>`];
  if (spec.description) lines.push(`  <description>${escapeXmlAttr(spec.description)}</description>`);
  lines.push("  <disks>");
  for (const d of spec.disks) {
    assertSafeName("disk", d.target);
    lines.push(`    <disk name='${d.target}' checkpoint='${d.bitmap ? "bitmap" : "no"}'/>`);
  }
  lines.push("  </disks>", "</domaincheckpoint>");
  return `${lines.join("\n")}\n`;
}

/**
 * A checkpoint's full description for `checkpoint-create --redefine`: how libvirt learns about a
 * checkpoint whose bitmaps were made outside it (offline backups with qemu-img).
 */
export function checkpointRedefineXml(spec: {
  name: string;
  parent: string | undefined;
  creationTime: number;
  disks: { target: string; bitmap: string | null }[];
  domainXml: string;
}): string {
  assertSafeName("checkpoint", spec.name);
  if (spec.parent) assertSafeName("checkpoint", spec.parent);
  const lines = ["<domaincheckpoint>", `  <name>${spec.name}</name>`];
  if (spec.parent) lines.push(`  <parent><name>${spec.parent}</name></parent>`);
  lines.push(`  <creationTime>${Math.floor(spec.creationTime)}</creationTime>`, "  <disks>");
  for (const d of spec.disks) {
    assertSafeName("disk", d.target);
    if (d.bitmap) assertSafeName("bitmap", d.bitmap);
    lines.push(
      d.bitmap
        ? `    <disk name='${d.target}' checkpoint='bitmap' bitmap='${d.bitmap}'/>`
        : `    <disk name='${d.target}' checkpoint='no'/>`,
    );
  }
  lines.push("  </disks>", spec.domainXml.trim(), "</domaincheckpoint>");
  return `${lines.join("\n")}\n`;
}
