import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";
import type { ExportOutcome } from "../backup/pipeline/export/ExportSession.js";

/**
 * Network exports waiting for their reader's outcome (docs/transfer-paths.md §4): the VM host's
 * job waits here after export_ready, and FinishExport delivers what the reader did.
 */
export class PendingExports {
  private readonly waiting = new Map<string, (o: ExportOutcome) => void>();

  /**
   * Waits for FinishExport of `jobId`. While nobody follows the job (`followed()` false: the
   * coordinator's call ended and it has not come back), a clock runs; after `idleTimeoutMs` of it
   * the export is given up ("timeout"), so an export never outlives its coordinator.
   */
  async wait(
    jobId: string,
    opts: { signal: AbortSignal; followed: () => boolean; idleTimeoutMs: number; pollMs?: number },
  ): Promise<ExportOutcome> {
    const { signal } = opts;
    signal.throwIfAborted();
    return new Promise<ExportOutcome>((resolve, reject) => {
      let idleSince: number | undefined;
      const done = () => {
        this.waiting.delete(jobId);
        clearInterval(timer);
        signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(abortError(signal, "waiting for the reader"));
      };
      const timer = setInterval(() => {
        if (opts.followed()) {
          idleSince = undefined;
          return;
        }
        idleSince ??= Date.now();
        if (Date.now() - idleSince >= opts.idleTimeoutMs) {
          done();
          reject(
            new CairnError(
              "timeout",
              `no coordinator followed export ${jobId} for ${Math.round(opts.idleTimeoutMs / 1000)} s: the export is ended`,
              { hint: "the coordinator retries the job (transfer.readerTimeoutSeconds)" },
            ),
          );
        }
      }, opts.pollMs ?? 1000);
      this.waiting.set(jobId, (o) => {
        done();
        resolve(o);
      });
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Delivers a reader's outcome; false when no export of that job waits here. */
  finish(jobId: string, outcome: ExportOutcome): boolean {
    const w = this.waiting.get(jobId);
    if (!w) return false;
    w(outcome);
    return true;
  }
}
