import { abortError } from "../../errors/CairnError.js";

/** A counting semaphore whose waiters can be aborted. */
export class Semaphore {
  private readonly queue: Array<{ go: () => void }> = [];
  constructor(private free: number) {}

  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw abortError(signal, "waiting for a repository slot");
    if (this.free > 0) {
      this.free--;
      return () => this.release();
    }
    await new Promise<void>((resolve, reject) => {
      const w = {
        go: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        reject(abortError(signal!, "waiting for a repository slot"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(w);
    });
    return () => this.release();
  }

  private release(): void {
    const next = this.queue.shift();
    if (next) next.go();
    else this.free++;
  }
}
