import { AsyncQueue } from "../../../shared/src/grpc/AsyncQueue.js";

/**
 * Fans one running job's events out to every caller attached to it. A late subscriber (the
 * coordinator re-attaching after a restart) first receives the newest event of each kind, then
 * everything after; after the end it receives the final event or the failure.
 */
export class JobFeed<T> {
  private readonly subscribers = new Set<AsyncQueue<T>>();
  private readonly latest = new Map<string, T>();
  private outcome: { item: T } | { error: unknown } | undefined;

  publish(kind: string, item: T): void {
    this.latest.set(kind, item);
    for (const q of this.subscribers) q.push(item);
  }

  finish(item: T): void {
    this.outcome = { item };
    for (const q of this.subscribers) {
      q.push(item);
      q.end();
    }
    this.subscribers.clear();
  }

  fail(error: unknown): void {
    this.outcome = { error };
    for (const q of this.subscribers) q.fail(error);
    this.subscribers.clear();
  }

  subscribe(): AsyncQueue<T> {
    const q = new AsyncQueue<T>();
    if (this.outcome) {
      if ("item" in this.outcome) {
        q.push(this.outcome.item);
        q.end();
      } else q.fail(this.outcome.error);
      return q;
    }
    for (const item of this.latest.values()) q.push(item);
    this.subscribers.add(q);
    return q;
  }

  unsubscribe(q: AsyncQueue<T>): void {
    this.subscribers.delete(q);
  }

  /** How many callers follow the job right now. */
  get followers(): number {
    return this.subscribers.size;
  }
}
