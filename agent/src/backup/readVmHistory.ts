import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";

/** A VM's sealed snapshots as read once for a job (the RPC reads them to find a sealed job id). */
export interface VmHistory {
  vmUuid: string;
  /** Oldest first (Repository.listVmSnapshots). */
  snapshots: SnapshotManifest[];
}

/**
 * The domain's sealed snapshots for planning: the ones the job was given, else read now — only this
 * VM's manifests either way. Given ones of another uuid (the request named the domain otherwise)
 * are not used.
 */
export function readVmHistory(
  repository: Repository,
  given: VmHistory | undefined,
  domainUuid: string,
  signal: AbortSignal,
): Promise<SnapshotManifest[]> {
  if (given?.vmUuid === domainUuid) return Promise.resolve(given.snapshots);
  return repository.listVmSnapshots(domainUuid, signal);
}
