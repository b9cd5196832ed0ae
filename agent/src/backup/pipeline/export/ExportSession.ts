import type { SnapshotManifest } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { FreezePhases } from "../../../guest/withFrozenGuest.js";
import type { BackupPlan } from "../../planDisks.js";
import type { ExportDescriptor } from "../descriptor/ExportDescriptor.js";

/** How the reading side ended: sealed (the checkpoint is kept) or failed (everything is undone). */
export type ExportOutcome = { sealed: SnapshotManifest } | { failed: string };

/**
 * The exporting half of a backup, alive between the export stage and finish(): on the VM host, in
 * the same process as the reader locally, or while another agent reads (network path).
 */
export interface ExportSession {
  readonly descriptor: ExportDescriptor;
  readonly plan: BackupPlan;
  /** freeze call / begin while frozen / thaw call, ms (undefined when not frozen). */
  readonly freezePhasesMs: FreezePhases | undefined;
  /**
   * Reading is done: the export may end now, beside the seal. Never rejects (a failure is logged
   * and finish() ends it again).
   */
  endExport(): Promise<void>;
  /**
   * Ends the export. After a seal: keeps the checkpoint (and its bitmaps), records the seal for
   * recovery and prunes Cairn's older checkpoints; otherwise rolls every change back through the
   * undo stack. Calls after one that succeeded share its result; after a failed one (say pruning
   * after a seal) a later call finishes what is left.
   */
  finish(outcome: ExportOutcome): Promise<{ prunedCheckpoints: string[] }>;
}
