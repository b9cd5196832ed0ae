import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import type { HistoryEntry as WireHistoryEntry } from "../../../../../shared/src/gen/cairn/v1/agent.js";
import type { BackupKind } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { HistoryEntry } from "./HistoryEntry.js";

const KINDS: readonly BackupKind[] = ["full", "incremental", "differential", "copy"];

/** HistoryEntry ⇄ proto HistoryEntry (TransferSpec.history: the VM host plans from the catalog's). */
export const historyEntryWire = {
  toWire: (h: HistoryEntry): WireHistoryEntry => ({
    snapshotId: h.id,
    jobId: h.jobId ?? "",
    disks: h.disks.map((d) => ({
      target: d.target,
      kind: d.kind,
      checkpoint: d.checkpoint ?? "",
      parentSnapshot: d.parentSnapshot ?? "",
    })),
  }),
  fromWire: (w: WireHistoryEntry): HistoryEntry => ({
    id: w.snapshotId,
    ...(w.jobId ? { jobId: w.jobId } : {}),
    disks: w.disks.map((d) => {
      if (!KINDS.includes(d.kind as BackupKind))
        throw new CairnError(
          "invalid-argument",
          `transfer.history ${w.snapshotId}: ${d.target} has kind ${JSON.stringify(d.kind)}`,
        );
      return {
        target: d.target,
        kind: d.kind as BackupKind,
        checkpoint: d.checkpoint || null,
        parentSnapshot: d.parentSnapshot || null,
      };
    }),
  }),
};
