import type { HistoryEntry } from "../../../shared/src/gen/cairn/v1/agent.js";
import { jobIdOf, snapshotManifestSchema } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { SnapshotRecord } from "../store/records.js";

/**
 * A VM's sealed snapshots in one repository as the network path's VM host plans from them
 * (TransferSpec.history, docs/transfer-paths.md §4), oldest first, from the manifests the catalog
 * keeps. A snapshot without a parseable manifest is left out: the host then plans as if it were not
 * there (a full where it would have been the parent), never a wrong incremental.
 */
export function historyOf(snaps: readonly SnapshotRecord[]): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  for (const s of [...snaps].sort((a, b) => a.createdMs - b.createdMs || (a.id < b.id ? -1 : 1))) {
    if (!s.manifestJson) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(s.manifestJson);
    } catch {
      continue;
    }
    const m = snapshotManifestSchema.safeParse(raw);
    if (!m.success) continue;
    out.push({
      snapshotId: m.data.id,
      jobId: jobIdOf(m.data) ?? s.jobId ?? "",
      disks: m.data.disks.map((d) => ({
        target: d.target,
        kind: d.kind,
        checkpoint: d.checkpoint ?? "",
        parentSnapshot: d.parentSnapshot ?? "",
      })),
    });
  }
  return out;
}
