import { abortError } from "../../errors/CairnError.js";
import {
  type CallOptions,
  type GetOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  putParts,
} from "../ports/ObjectStore.js";

/**
 * Limits payload bytes per second (put and get) with a token bucket holding at most one second of
 * budget. A transfer larger than the bucket waits until its whole size is paid (debt), so the
 * long-run rate holds for any object size.
 */
export class BandwidthLimitedObjectStore implements ObjectStore {
  private tokens: number;
  private last = Date.now();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly inner: ObjectStore,
    private readonly bytesPerSecond: number,
  ) {
    this.tokens = bytesPerSecond;
  }

  get location(): string {
    return this.inner.location;
  }

  get writeAlignment(): number | undefined {
    return this.inner.writeAlignment;
  }

  get stagedPutsHidden(): boolean | undefined {
    return this.inner.stagedPutsHidden;
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
      if (this.tokens < 0) await delay((-this.tokens / this.bytesPerSecond) * 1000, signal);
    });
    this.chain = p.catch(() => {});
    return p;
  }

  commitStaged(options?: CallOptions): Promise<void> {
    return this.inner.commitStaged(options);
  }

  discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.inner.discardStaged(owner, options);
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    await this.pay(data.length, options?.signal);
    return this.inner.put(key, data, options);
  }
  async putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    await this.pay(
      parts.reduce((n, p) => n + p.length, 0),
      options?.signal,
    );
    return putParts(this.inner, key, parts, options);
  }
  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const b = await this.inner.get(key, options);
    await this.pay(b.length, options?.signal);
    return b;
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.inner.head(key, options);
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(key, options);
  }
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix, options);
  }
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, "bandwidth wait"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!, "bandwidth wait"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const _bandwidthConforms = BandwidthLimitedObjectStore satisfies new (
  inner: ObjectStore,
  bytesPerSecond: number,
) => ObjectStore;
