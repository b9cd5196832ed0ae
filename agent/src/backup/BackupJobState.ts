import { abortError, CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { BackupJobState } from "../../../shared/src/grpc/wire/backupJobState.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";

// The states are defined with their wire enum; cleanup runs in every terminal path (the pipeline's UndoStack).
export type { BackupJobState };

const NEXT: Record<BackupJobState, readonly BackupJobState[]> = {
  planning: ["quiescing", "failed"],
  quiescing: ["reading", "failed"],
  reading: ["sealing", "failed"],
  sealing: ["succeeded", "failed"],
  succeeded: [],
  failed: [],
};

/** Holds the state; every transition is logged; an illegal one throws. */
export class BackupJobStateMachine {
  private current: BackupJobState = "planning";
  private readonly since = new Map<BackupJobState, number>([["planning", performance.now()]]);

  constructor(
    private readonly jobId: string,
    private readonly log: Logger,
    private readonly onChange?: (s: BackupJobState) => void,
  ) {
    log.info({ jobId, state: "planning" }, "backup job state");
  }

  get state(): BackupJobState {
    return this.current;
  }

  /**
   * Moves a job that threw to `failed` (unless it already ended) and returns what to throw: when
   * the job's signal fired, an abort error, whatever the abort broke on its way out.
   */
  fail(err: unknown, signal: AbortSignal): unknown {
    const failure =
      signal.aborted && !isCairnError(err, "aborted") ? abortError(signal, `backup job ${this.jobId}`) : err;
    if (this.current !== "failed" && this.current !== "succeeded")
      this.to("failed", { err: (failure as Error).message });
    return failure;
  }

  to(next: BackupJobState, details: Record<string, unknown> = {}): void {
    if (!NEXT[this.current].includes(next)) {
      throw new CairnError(
        "internal",
        `backup job ${this.jobId}: illegal transition ${this.current} → ${next}`,
      );
    }
    const ms = performance.now() - (this.since.get(this.current) ?? performance.now());
    this.log.info(
      { jobId: this.jobId, from: this.current, state: next, ms: Math.round(ms), ...details },
      "backup job state",
    );
    this.current = next;
    this.since.set(next, performance.now());
    this.onChange?.(next);
  }
}
