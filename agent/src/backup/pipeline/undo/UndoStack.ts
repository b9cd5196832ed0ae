import type { Logger } from "../../../../../shared/src/log/createLogger.js";

/** "rollback": undone unless the backup sealed (keep()); "cleanup": runs whatever happened. */
export type UndoKind = "rollback" | "cleanup";

interface Step {
  label: string;
  kind: UndoKind;
  fn: (signal: AbortSignal) => Promise<void>;
}

/**
 * The one place a backup's changes are taken back: each change pushes its undo right after it was
 * made; runAll() runs them newest first, logging each, never throwing. Steps get a signal of their
 * own, never the job's: a cancelled job must still clean up. keep() (after the seal) drops the
 * rollback steps — the checkpoint and its bitmaps then belong to a restore point — and leaves the
 * cleanup ones (the export, temporary bitmaps, the job directory).
 */
export class UndoStack {
  private steps: Step[] = [];

  constructor(
    private readonly log: Logger,
    private readonly context: Record<string, unknown> = {},
    private readonly stepTimeoutMs = 60_000,
  ) {}

  push(label: string, fn: (signal: AbortSignal) => Promise<void>, kind: UndoKind = "rollback"): void {
    this.steps.push({ label, kind, fn });
  }

  /** Commit: the rollback steps pushed so far are forgotten. */
  keep(): void {
    const dropped = this.steps.filter((s) => s.kind === "rollback").map((s) => s.label);
    this.steps = this.steps.filter((s) => s.kind === "cleanup");
    if (dropped.length) this.log.debug({ ...this.context, kept: dropped }, "undo: kept after seal");
  }

  /** Labels still to run, newest first (for tests and logs). */
  get pending(): string[] {
    return this.steps.map((s) => s.label).reverse();
  }

  /** Runs every step newest first; a failed step is logged and the others still run. Idempotent. */
  async runAll(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const s of steps) {
      try {
        await s.fn(AbortSignal.timeout(this.stepTimeoutMs));
        this.log.debug({ ...this.context, step: s.label }, "undo step done");
      } catch (err) {
        this.log.error({ ...this.context, step: s.label, err }, "undo step failed");
      }
    }
  }
}
