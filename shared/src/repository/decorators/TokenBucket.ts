import { abortableSleep } from "./abortableSleep.js";

/**
 * A byte rate limit: a token bucket holding at most one second of budget. A payment larger than the
 * bucket waits until its whole size is paid (debt), so the long-run rate holds for any size.
 * Payments are served in order (FIFO), so concurrent callers share the rate fairly. Shared by the
 * repository's bandwidth decorator and the backup reader's NBD reads (docs/transfer-paths.md §7).
 */
export class TokenBucket {
  private tokens: number;
  private last = Date.now();
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond;
  }

  pay(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const p = this.chain.then(async () => {
      const now = Date.now();
      this.tokens = Math.min(
        this.bytesPerSecond,
        this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond,
      );
      this.last = now;
      this.tokens -= bytes;
      if (this.tokens < 0)
        await abortableSleep((-this.tokens / this.bytesPerSecond) * 1000, signal, "bandwidth wait");
    });
    this.chain = p.catch(() => {});
    return p;
  }
}
