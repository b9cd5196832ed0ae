import type { BackupDiskSpec } from "../../../hypervisor/backupXml.js";
import type { ExportEndpoint } from "../../../transfer/JobTls.js";

/**
 * Port: where a backup's point-in-time view is served, and how a reader reaches it. Locally a unix
 * socket in the job's directory (localExportServer); on the network path TCP with the job's TLS
 * (networkExportServer, docs/transfer-paths.md §4-§5). The pipeline does not care which.
 */
export interface ExportServer {
  /** The VM host's cap on reading each export, bytes/s (transfer.maxExportBytesPerSecond); 0 for none. */
  readonly maxBytesPerSecond: number;
  /**
   * Prepares a live (libvirt pull backup) export for a job: credentials and a port on the network
   * path. Called beside planning, before the freeze. Undone by the returned server's close().
   */
  live(opts: { jobId: string; jobDir: string; signal: AbortSignal }): Promise<LiveExportServer>;
  /** Starts one qemu-nbd export of a shut-off VM's disk (read-only). */
  qemuNbd(opts: QemuNbdRequest): Promise<RunningExport>;
}

export interface LiveExportServer {
  /** libvirt's <domainbackup> document for these disks, with this server's <server> element. */
  backupXml(disks: BackupDiskSpec[]): string;
  /** Where a reader finds export `exportName` (libvirt may report the socket it used). */
  endpoint(exportName: string, reportedSocket: string | undefined): ExportEndpoint;
  /**
   * Takes what backup-begin needs held until it returned: on the network path libvirt's backup TLS
   * directory with this job's credentials (§5), taken before the freeze so waiting for another job
   * never happens inside it. Returns the release (idempotent).
   */
  holdForBegin(signal: AbortSignal): Promise<() => Promise<void>>;
  /** Releases what live() took (port, credentials); no error when there is nothing. */
  close(signal: AbortSignal): Promise<void>;
}

export interface QemuNbdRequest {
  jobDir: string;
  /** Chosen (and journalled) by the caller before the start; a local export listens there. */
  socketPath: string;
  image: string;
  format: string;
  exportName: string;
  /** Persistent bitmap to expose as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  signal: AbortSignal;
}

export interface RunningExport {
  /** The process serving it (journalled so a restarted agent ends an orphan); undefined in tests. */
  pid: number | undefined;
  endpoint: ExportEndpoint;
  stop(): Promise<void>;
}
