import { jobIdOf, type SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { SnapshotRecord } from "../store/records.js";

/** The coordinator's index entry for a sealed snapshot. */
export function snapshotRecordOf(m: SnapshotManifest, repository: string): SnapshotRecord {
  return {
    id: m.id,
    repository,
    vmUuid: m.vm.uuid,
    vmName: m.vm.name,
    jobId: jobIdOf(m) ?? null,
    policy: m.labels["policy"] ?? null,
    createdMs: Date.parse(m.startedAt),
    logicalBytes: m.disks.reduce((n, d) => n + d.virtualSize, 0),
    bytesStored: m.stats.bytesStored,
    kinds: Object.fromEntries(
      m.disks.map((d) => [d.target, d.fullReason ? `${d.kind}: ${d.fullReason}` : d.kind]),
    ),
  };
}
