import type { GetOptions, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { ObjectStoreDecorator } from "./ObjectStoreDecorator.js";
import { TokenBucket } from "./TokenBucket.js";

/** Limits payload bytes per second (put and get) with a TokenBucket. */
export class BandwidthLimitedObjectStore extends ObjectStoreDecorator {
  private readonly bucket: TokenBucket;

  constructor(inner: ObjectStore, bytesPerSecond: number) {
    super(inner);
    this.bucket = new TokenBucket(bytesPerSecond);
  }

  private pay(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    return this.bucket.pay(bytes, signal);
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
