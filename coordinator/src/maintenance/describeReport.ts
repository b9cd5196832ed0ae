import type { MaintenanceReport } from "../../../shared/src/gen/cairn/v1/common.js";
import { formatBytes } from "../../../shared/src/units/formatBytes.js";

/**
 * A maintenance report in one line for the job's reason, and whether the job succeeded: a verify
 * that found problems ran to the end but fails the job, so operators see it in `jobs list` and alerts.
 */
export function describeReport(r: MaintenanceReport): { ok: boolean; summary: string } {
  const rep = r.report;
  switch (rep?.$case) {
    case "verify": {
      const v = rep.value;
      const read =
        v.chunksRead > 0n || v.readDataSlices > 1
          ? `, ${v.chunksRead} read${v.readDataSlices > 1 ? ` (slice ${v.readDataSlice + 1}/${v.readDataSlices})` : ""}`
          : "";
      const checked = `${v.snapshotsChecked} snapshots, ${v.chunksChecked} chunks${read}`;
      return v.ok
        ? { ok: true, summary: `verified: ${checked}` }
        : {
            ok: false,
            summary: `verification found ${v.problems.length} problem${v.problems.length === 1 ? "" : "s"} (${checked}); first: ${v.problems[0] ?? ""}`,
          };
    }
    case "prune": {
      const p = rep.value;
      return {
        ok: true,
        summary: `${p.dryRun ? "would remove" : "removed"} ${p.removedSnapshotIds.length} snapshots, kept ${p.kept}`,
      };
    }
    case "gc": {
      const g = rep.value;
      return {
        ok: true,
        summary: `${g.dryRun ? "would free" : "freed"} ${formatBytes(Number(g.bytesFreed))}: ${g.chunksDeleted} chunks, ${g.packsDeleted} packs deleted, ${g.packsRepacked} repacked`,
      };
    }
    case "stats": {
      const s = rep.value;
      return {
        ok: true,
        summary: `${s.snapshots} snapshots, ${formatBytes(Number(s.storedBytes))} stored, dedup ${s.dedupRatio.toFixed(2)}x`,
      };
    }
    case "scan":
      return { ok: true, summary: `found ${rep.value.manifestsJson.length} snapshots` };
    default:
      return { ok: false, summary: "the agent sent an empty report" };
  }
}
