import type { CallOptions, GetOptions, ObjectInfo, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { ObjectStoreDecorator } from "./ObjectStoreDecorator.js";
import { Semaphore } from "./Semaphore.js";

/** At most `limit` calls in flight to the inner store (S3 connection pools, NFS servers...). */
export class ConcurrencyLimitedObjectStore extends ObjectStoreDecorator {
  private readonly sem: Semaphore;
  constructor(inner: ObjectStore, limit: number) {
    super(inner);
    this.sem = new Semaphore(Math.max(1, limit));
  }

  private async run<T>(signal: AbortSignal | undefined, f: () => Promise<T>): Promise<T> {
    const release = await this.sem.acquire(signal);
    try {
      return await f();
    } finally {
      release();
    }
  }

  override put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.run(options?.signal, () => super.put(key, data, options));
  }
  override putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    return this.run(options?.signal, () => super.putParts(key, parts, options));
  }
  override get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.run(options?.signal, () => super.get(key, options));
  }
  override head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.run(options?.signal, () => super.head(key, options));
  }
  override delete(key: string, options?: CallOptions): Promise<void> {
    return this.run(options?.signal, () => super.delete(key, options));
  }
  override async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
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
