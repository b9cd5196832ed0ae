import { CairnError } from "../../../shared/src/errors/CairnError.js";

interface RunningJob {
  jobId: string;
  domain: string;
  controller: AbortController;
  done: Promise<unknown>;
}

/**
 * The jobs this agent runs right now. At most one job per domain (libvirt allows one backup job
 * per domain, and two writers of one checkpoint chain would corrupt it). Jobs are aborted through
 * their AbortController; their own cleanup (thaw, job end, checkpoint removal) still runs.
 */
export class JobRegistry {
  private readonly jobs = new Map<string, RunningJob>();

  start<T>(jobId: string, domain: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.jobs.has(jobId))
      throw new CairnError("already-exists", `job ${jobId} is already running on this agent`);
    const busy = [...this.jobs.values()].find((j) => j.domain === domain);
    if (busy) {
      throw new CairnError("failed-precondition", `domain ${domain} already has job ${busy.jobId} running`, {
        hint: "wait for it or cancel it; one job per VM at a time",
      });
    }
    const controller = new AbortController();
    const done = run(controller.signal).finally(() => this.jobs.delete(jobId));
    this.jobs.set(jobId, { jobId, domain, controller, done });
    return done;
  }

  /** Aborts a running job; false when no such job runs here. */
  abort(jobId: string, reason: string): boolean {
    const j = this.jobs.get(jobId);
    if (!j) return false;
    j.controller.abort(new CairnError("aborted", `job ${jobId} aborted: ${reason}`));
    return true;
  }

  /**
   * Aborts a running job and waits (bounded) until its cleanup has run, so a caller that records
   * the job as cancelled afterwards never races the thaw, job end and checkpoint removal.
   * `ended` is false when the timeout came first (the cleanup still runs).
   */
  async abortAndWait(
    jobId: string,
    reason: string,
    timeoutMs: number,
  ): Promise<{ found: boolean; ended: boolean }> {
    const j = this.jobs.get(jobId);
    if (!j) return { found: false, ended: true };
    this.abort(jobId, reason);
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      j.done.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return { found: true, ended };
  }

  runningJobIds(): string[] {
    return [...this.jobs.keys()];
  }

  /** Aborts every job and waits (bounded) for their cleanup to finish. */
  async abortAll(reason: string, timeoutMs: number): Promise<void> {
    for (const id of this.jobs.keys()) this.abort(id, reason);
    const all = Promise.allSettled([...this.jobs.values()].map((j) => j.done));
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs))]);
  }
}
