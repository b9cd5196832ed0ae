/** A push-to-pull bridge for server-streaming RPCs: producers push, the RPC's generator pulls. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | undefined;
  private failed: { error: unknown } | undefined;
  private ended = false;
  private rejectWaiting: ((e: unknown) => void) | undefined;

  push(item: T): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: item, done: false });
    } else this.items.push(item);
  }

  end(): void {
    this.ended = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  fail(error: unknown): void {
    this.failed = { error };
    this.ended = true;
    this.rejectWaiting?.(error);
    this.waiting = undefined;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length) {
        yield this.items.shift()!;
        continue;
      }
      if (this.failed) throw this.failed.error;
      if (this.ended) return;
      const r = await new Promise<IteratorResult<T>>((resolve, reject) => {
        this.waiting = resolve;
        this.rejectWaiting = reject;
      });
      if (r.done) return;
      yield r.value;
    }
  }
}
