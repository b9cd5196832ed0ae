import type { VmUpdate } from "../store/records.js";
import type { Store } from "../store/Store.js";

/**
 * Group commit for domain events: updates from every agent's stream are applied in one store
 * transaction per short interval instead of one durable commit per message. A caller's promise
 * resolves once its updates are durable, so each stream keeps its order and gets backpressure.
 */
export class EventSink {
  private pending: VmUpdate[] = [];
  private waiters: { resolve: (n: number) => void; reject: (e: unknown) => void; count: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    private readonly opts: { delayMs: number; maxBatch: number } = { delayMs: 10, maxBatch: 5000 },
  ) {}

  push(updates: readonly VmUpdate[]): Promise<number> {
    if (!updates.length) return Promise.resolve(0);
    return new Promise<number>((resolve, reject) => {
      this.pending.push(...updates);
      this.waiters.push({ resolve, reject, count: updates.length });
      if (this.pending.length >= this.opts.maxBatch) this.schedule(0);
      else this.schedule(this.opts.delayMs);
    });
  }

  private schedule(delay: number): void {
    if (this.timer && delay > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }, delay);
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    if (!batch.length) return;
    try {
      await this.store.applyVmUpdates(batch, this.now());
      for (const w of waiters) w.resolve(w.count);
    } catch (e) {
      for (const w of waiters) w.reject(e);
    }
  }

  /** Waits for everything pushed so far to be durable. */
  async drain(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }
    await this.flushing;
  }
}
