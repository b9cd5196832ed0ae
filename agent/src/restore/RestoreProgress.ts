import type { Progress } from "../../../shared/src/gen/cairn/v1/common.js";

/**
 * Progress of one restore job in wire form: the bytes of every disk it writes, one after the
 * other, with the rate since the job began. The disk engine reports per disk (restoreDisk's
 * onProgress, already throttled); a VM restore adds each finished disk to the base.
 */
export class RestoreProgress {
  private readonly started = performance.now();
  private base = 0;
  private done = 0;
  private total = 0;

  constructor(private readonly emit: (p: Progress) => void) {}

  /** The bytes the whole job writes (the sum of the disks' virtual sizes). */
  setTotal(bytes: number): void {
    this.total = bytes;
  }

  /** A named step with no bytes of its own ("plan", "define", "start", ...). */
  phase(name: string): void {
    this.send(name);
  }

  /** Bytes done of the disk being written now. */
  disk(doneInDisk: number): void {
    this.done = this.base + doneInDisk;
    this.send("write");
  }

  /** The disk being written is complete (its whole size counts as done). */
  diskDone(size: number): void {
    this.base += size;
    this.done = this.base;
  }

  private send(phase: string): void {
    const rate = this.done / Math.max(0.001, (performance.now() - this.started) / 1000);
    this.emit({
      bytesDone: BigInt(this.done),
      bytesTotal: BigInt(this.total),
      rate,
      etaSeconds: rate > 0 && this.total > 0 ? (this.total - this.done) / rate : -1,
      phase,
    });
  }
}
