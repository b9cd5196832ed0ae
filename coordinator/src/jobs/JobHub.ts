import { EventEmitter } from "node:events";
import type { JobProgress, JobRecord } from "../store/records.js";

/**
 * In-memory view of jobs that are moving: progress is not written to the store on every update
 * (it would cost a durable write per tick), only kept here for WatchJob and metrics.
 */
export class JobHub {
  private readonly progress = new Map<string, JobProgress>();
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  setProgress(jobId: string, p: JobProgress): void {
    this.progress.set(jobId, p);
    this.emitter.emit(jobId, undefined);
  }

  getProgress(jobId: string): JobProgress | undefined {
    return this.progress.get(jobId);
  }

  /** A job record changed (state, phase, result). */
  changed(job: JobRecord): void {
    if (job.state !== "running") this.progress.delete(job.id);
    this.emitter.emit(job.id, job);
    this.emitter.emit("*", job);
  }

  /** Calls `fn` on every change of one job until the returned function is called. */
  watch(jobId: string, fn: (job: JobRecord | undefined) => void): () => void {
    this.emitter.on(jobId, fn);
    return () => this.emitter.off(jobId, fn);
  }

  watchAll(fn: (job: JobRecord) => void): () => void {
    this.emitter.on("*", fn);
    return () => this.emitter.off("*", fn);
  }
}
