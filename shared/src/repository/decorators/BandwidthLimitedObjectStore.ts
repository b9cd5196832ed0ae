import type { GetOptions, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { abortableSleep } from "./abortableSleep.js";
import { ObjectStoreDecorator } from "./ObjectStoreDecorator.js";

/**
 * Limits payload bytes per second (put and get) with a token bucket holding at most one second of
 * budget. A transfer larger than the bucket waits until its whole size is paid (debt), so the
 * long-run rate holds for any object size.
 */
export class BandwidthLimitedObjectStore extends ObjectStoreDecorator {
  private tokens: number;
  private last = Date.now();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    inner: ObjectStore,
    private readonly bytesPerSecond: number,
  ) {
    super(inner);
    this.tokens = bytesPerSecond;
  }

  /** Serialises payments so concurrent callers share the rate fairly (FIFO). */
  private pay(bytes: number, signal: AbortSignal | undefined): Promise<void> {
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

  override async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    await this.pay(data.length, options?.signal);
    return super.put(key, data, options);
  }
  override async putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    await this.pay(
      parts.reduce((n, p) => n + p.length, 0),
      options?.signal,
    );
    return super.putParts(key, parts, options);
  }
  override async get(key: string, options?: GetOptions): Promise<Buffer> {
    const b = await super.get(key, options);
    await this.pay(b.length, options?.signal);
    return b;
  }
}

export const _bandwidthConforms = BandwidthLimitedObjectStore satisfies new (
  inner: ObjectStore,
  bytesPerSecond: number,
) => ObjectStore;
