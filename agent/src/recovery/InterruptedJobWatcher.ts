import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { ownerAlive, readJobRecord } from "../backup/jobRecord.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { type RecoveredJob, recoverInterruptedJobs } from "./recoverInterruptedJobs.js";

export interface InterruptedJobWatcherOptions {
  /** How often job records are checked; a pass reads a few small files, no virsh. */
  intervalMs: number;
  /** A job whose cleanup failed is tried again after this long, not every pass. */
  retryAfterMs: number;
  /** A job directory without a record is an orphan once this old. */
  recordlessAfterMs: number;
  onRecovered?: (jobs: RecoveredJob[]) => void;
}

/**
 * The daemon's watch over the work dir it shares with the local CLI (`cairn agent backup`): a job
 * whose owner process died (kill -9 of the CLI) would otherwise hold its libvirt backup job, NBD
 * export and scratch images, or its orphan qemu-nbd and bitmaps, until some later Cairn run, and
 * the VM could not be migrated or backed up meanwhile. Each pass only checks the owners' pids; the
 * hypervisor is asked only about a job whose owner is gone.
 */
export class InterruptedJobWatcher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly ac = new AbortController();
  private readonly failedAt = new Map<string, number>();

  constructor(
    private readonly deps: { hypervisor: Hypervisor; log: Logger },
    private readonly workDir: string,
    private readonly opts: InterruptedJobWatcherOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return; // a slow cleanup is never run twice at once
      this.running = this.pass()
        .then(() => {})
        .catch((err) => this.deps.log.error({ err }, "interrupted-job watcher pass failed"))
        .finally(() => {
          this.running = undefined;
        });
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.ac.abort();
    await this.running;
  }

  /** One pass: the job directories whose owner died, cleaned up. */
  async pass(): Promise<RecoveredJob[]> {
    const jobsDir = join(this.workDir, "jobs");
    const names = await readdir(jobsDir).catch(() => [] as string[]);
    const due = new Set<string>();
    const now = Date.now();
    for (const k of this.failedAt.keys()) if (!names.includes(k)) this.failedAt.delete(k);
    for (const name of names) {
      const dir = join(jobsDir, name);
      const rec = await readJobRecord(dir);
      if (rec && (rec.pid === process.pid || ownerAlive(rec))) continue;
      // A backup makes its directory a moment before its record: only an old record-less one is left over.
      if (!rec && (await ageMs(dir, now)) < this.opts.recordlessAfterMs) continue;
      const failed = this.failedAt.get(name);
      if (failed !== undefined && now - failed < this.opts.retryAfterMs) continue;
      due.add(name);
    }
    if (due.size === 0) return [];
    const recovered = await recoverInterruptedJobs(
      this.deps,
      this.workDir,
      AbortSignal.any([this.ac.signal, AbortSignal.timeout(120_000)]),
      { only: due, watching: true, recordlessAfterMs: this.opts.recordlessAfterMs },
    );
    const done = new Set(recovered.map((r) => r.jobId));
    for (const name of due) {
      // Recorded under the directory's name; a directory left in place failed: retried later.
      if (done.has(name)) this.failedAt.delete(name);
      else this.failedAt.set(name, now);
    }
    if (recovered.length) this.opts.onRecovered?.(recovered);
    return recovered;
  }
}

async function ageMs(path: string, now: number): Promise<number> {
  return stat(path).then(
    (s) => now - s.mtimeMs,
    () => 0,
  );
}
