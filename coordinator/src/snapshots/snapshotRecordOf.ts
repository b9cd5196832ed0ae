import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { jobIdOf, snapshotManifestSchema } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import { withoutConfigFileContents } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { SnapshotRecord } from "../store/records.js";

/**
 * The coordinator's index entry for a sealed snapshot, from its manifest (format §7) as an agent
 * reported it (a backup's result, a scan). A manifest that does not parse is refused, naming why.
 */
export function snapshotRecordOf(manifestJson: string, repository: string): SnapshotRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(manifestJson);
  } catch (e) {
    throw new CairnError(
      "protocol",
      `the agent reported a manifest that is not JSON: ${(e as Error).message}`,
    );
  }
  const parsed = snapshotManifestSchema.safeParse(raw);
  if (!parsed.success)
    throw new CairnError("protocol", `the agent reported an invalid manifest: ${parsed.error.message}`);
  const m = parsed.data;
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
    // The index never holds NVRAM or TPM state (#24 hole 5): restores read it from the repository.
    manifestJson: withoutConfigFileContents(manifestJson),
  };
}
