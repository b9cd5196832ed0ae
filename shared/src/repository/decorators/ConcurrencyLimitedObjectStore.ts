import {
  type CallOptions,
  type GetOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  putParts,
} from "../ports/ObjectStore.js";
import { Semaphore } from "./Semaphore.js";

/** At most `limit` calls in flight to the inner store (S3 connection pools, NFS servers...). */
export class ConcurrencyLimitedObjectStore implements ObjectStore {
  private readonly sem: Semaphore;
  constructor(
    private readonly inner: ObjectStore,
    limit: number,
  ) {
    this.sem = new Semaphore(Math.max(1, limit));
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

  private async run<T>(signal: AbortSignal | undefined, f: () => Promise<T>): Promise<T> {
    const release = await this.sem.acquire(signal);
    try {
      return await f();
    } finally {
      release();
    }
  }

  commitStaged(options?: CallOptions): Promise<void> {
    return this.inner.commitStaged(options);
  }

  discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.inner.discardStaged(owner, options);
  }

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.run(options?.signal, () => this.inner.put(key, data, options));
  }
  putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    return this.run(options?.signal, () => putParts(this.inner, key, parts, options));
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.run(options?.signal, () => this.inner.get(key, options));
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.run(options?.signal, () => this.inner.head(key, options));
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.run(options?.signal, () => this.inner.delete(key, options));
  }
  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    const all = await this.run(options?.signal, async () => {
      const out: ObjectInfo[] = [];
      for await (const o of this.inner.list(prefix, options)) out.push(o);
      return out;
    });
    yield* all;
  }
}

export const _concurrencyConforms = ConcurrencyLimitedObjectStore satisfies new (
  inner: ObjectStore,
  limit: number,
) => ObjectStore;
