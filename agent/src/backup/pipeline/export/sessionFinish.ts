import type { Logger } from "../../../../../shared/src/log/createLogger.js";
import type { SnapshotManifest } from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import { once } from "../undo/once.js";
import type { UndoStack } from "../undo/UndoStack.js";
import type { ExportOutcome } from "./ExportSession.js";

/**
 * ExportSession.finish for both exports: a failed read rolls every change back through the undo
 * stack; a seal keeps what belongs to the restore point (undo.keep()), records the seal for startup
 * recovery, undoes the rest (exports, scratch, temporary bitmaps, the job directory) and then runs
 * `afterSeal` (the live path prunes older checkpoints). Retried until it succeeds once.
 */
export function sessionFinish(o: {
  undo: UndoStack;
  log: Logger;
  jobId: string;
  domain: string;
  recordSeal(): Promise<void>;
  afterSeal?(sealed: SnapshotManifest): Promise<string[]>;
}): (outcome: ExportOutcome) => Promise<{ prunedCheckpoints: string[] }> {
  return once(async (outcome: ExportOutcome) => {
    if ("failed" in outcome) {
      o.log.warn(
        { jobId: o.jobId, domain: o.domain, reason: outcome.failed },
        "backup not sealed: rolling back",
      );
      await o.undo.runAll();
      return { prunedCheckpoints: [] };
    }
    o.undo.keep();
    await o.recordSeal();
    await o.undo.runAll();
    return { prunedCheckpoints: (await o.afterSeal?.(outcome.sealed)) ?? [] };
  });
}
