import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type { QuiesceMode } from "../../../shared/src/grpc/wire/quiesceMode.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { TokenBucket } from "../../../shared/src/repository/decorators/TokenBucket.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { FreezeMarkers } from "../guest/FreezeMarkers.js";
import type { GuestAgent } from "../guest/GuestAgent.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { VmConfigFilesConfig } from "../vmconfig/captureVmConfigFiles.js";
import type { BackupJobState } from "./BackupJobState.js";
import type { DiskImages } from "./pipeline/export/DiskImages.js";
import type { ExportServer } from "./pipeline/export/ExportServer.js";
import type { VmHistory } from "./readVmHistory.js";

// What a backup job is given, whether it runs live (libvirt pull backup) or offline (qemu-nbd).

export interface BackupDeps {
  hypervisor: Hypervisor;
  guestAgent: GuestAgent;
  freezeMarkers: FreezeMarkers;
  repository: Repository;
  log: Logger;
  /** Where exports are served; default: unix sockets read by this agent (localExportServer). */
  exportServer?: ExportServer;
  /** Default: qemu-img (qemuImgImages). */
  images?: DiskImages;
  /** This agent's limit on all its NBD reads (transfer.maxReadBytesPerSecond), shared by its jobs. */
  readLimiter?: TokenBucket;
}

export interface BackupConfig {
  /** Agent-owned directory for per-job NBD sockets and scratch images. */
  workDir: string;
  /** QEMU's user and group: QEMU creates the NBD socket in the job's socket directory. */
  qemuUid: number;
  qemuGid: number;
  freezeTimeoutMs: number;
  thawTimeoutMs: number;
  maxFrozenMs: number;
  guestPingTimeoutMs: number;
  hookTimeoutMs: number;
  nbdRequestSize: number;
  nbdDepth: number;
  /** Where libvirt keeps NVRAM and swtpm state (default: libvirt's own defaults). */
  vmConfigFiles?: VmConfigFilesConfig;
}

export interface BackupRequest {
  jobId: string;
  /** Domain name or uuid. */
  domain: string;
  mode: BackupMode;
  quiesce: QuiesceMode;
  /** Disk targets; empty/undefined = every disk with a source. */
  disks?: readonly string[];
  labels?: Record<string, string>;
  /** The job's limit on its NBD reads, bytes/s (docs/transfer-paths.md §7); 0 or absent for none. */
  bandwidthBytesPerSecond?: number;
  /** Disks the coordinator's ledger has no valid chain for: read in full with this reason. */
  fullReasons?: Readonly<Record<string, string>>;
  /** The domain's sealed snapshots if the caller read them already (one read per job). */
  history?: VmHistory;
  /** Run in the guest (guest-exec) right before the freeze / right after the thaw. */
  hooks?: { preFreeze?: readonly string[]; postThaw?: readonly string[] };
  signal: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  onState?: (s: BackupJobState) => void;
  /**
   * The checkpoint the job is about to make, awaited before libvirt makes it (the ledger records
   * it as pending first, so a crash right after leaves no checkpoint the ledger never heard of).
   */
  onCheckpoint?: (c: PendingCheckpoint) => Promise<void> | void;
}

export interface PendingCheckpoint {
  name: string;
  /** The domain's current checkpoint, which libvirt makes the new one's parent. */
  parent: string | undefined;
  /** Disk target → bitmap name (libvirt names each bitmap after its checkpoint). */
  bitmaps: Record<string, string>;
}

export interface BackupProgress {
  phase: string;
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  etaSeconds: number;
}
