import type { BackupMode } from "../../../../../shared/src/grpc/wire/backupMode.js";
import type { Consistency } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { VmConfigFiles } from "../../../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { ExportEndpoint } from "../../../transfer/JobTls.js";
import type { DiskPlan } from "../../planDisks.js";

/**
 * Everything a reader needs to read a backup's exports and seal its snapshot, and nothing that ties
 * it to the exporting process: plain data, so it crosses hosts (proto ExportReady, exportReadyWire).
 * Made by the export stage on the VM host; read by readAndSeal on whichever agent reads.
 */
export interface ExportDescriptor {
  domain: { uuid: string; name: string };
  disks: ExportedDisk[];
  /** The checkpoint this backup makes (null for copy). */
  newCheckpoint: string | null;
  /** The persistent definition, captured after the export began. */
  domainXml: string;
  /** NVRAM/TPM state captured on the VM host (manifest extra, format §7). */
  configFiles: VmConfigFiles;
  consistency: Consistency;
  /** Freeze window (ms); undefined when the guest was not frozen. */
  freezeWindowMs: number | undefined;
  /** Shut-off VM exported by qemu-nbd. */
  offline: boolean;
  mode: BackupMode;
  /** The VM host's cap on reading this export, bytes/s; 0 for none (§7). */
  maxBytesPerSecond: number;
}

export interface ExportedDisk {
  target: string;
  endpoint: ExportEndpoint;
  exportName: string;
  /** Exposed as qemu:dirty-bitmap:NAME for an incremental or differential read. */
  dirtyBitmap: string | undefined;
  /** The disk's format as the domain has it (recorded in the manifest). */
  sourceFormat: string;
  plan: DiskPlan;
}
