import type { BackupKind } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";

/**
 * A sealed snapshot as planning and checkpoint pruning need it. A SnapshotManifest is one
 * (structurally); on the network path the VM host gets these from the coordinator's catalog
 * (TransferSpec.history) since it never opens the repository (docs/transfer-paths.md §4).
 */
export interface HistoryEntry {
  id: string;
  jobId?: string | undefined;
  disks: readonly HistoryDisk[];
}

export interface HistoryDisk {
  target: string;
  kind: BackupKind;
  checkpoint: string | null;
  parentSnapshot: string | null;
}
