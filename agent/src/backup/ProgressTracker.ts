import type { BackupProgress } from "./BackupRequest.js";

/** Turns byte counts into rate/ETA progress events, at most every 250 ms. */
export class ProgressTracker {
  private total = 0;
  private readonly started = performance.now();
  private lastEmit = 0;

  constructor(private readonly emit?: (p: BackupProgress) => void) {}

  addTotal(n: number): void {
    this.total += n;
  }

  update(phase: string, done: number): void {
    const now = performance.now();
    if (!this.emit || (now - this.lastEmit < 250 && done < this.total)) return;
    this.lastEmit = now;
    const rate = done / Math.max(0.001, (now - this.started) / 1000);
    this.emit({
      phase,
      bytesDone: done,
      bytesTotal: this.total,
      rate,
      etaSeconds: rate > 0 ? (this.total - done) / rate : -1,
    });
  }
}
