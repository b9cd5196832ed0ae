import {
  type CallOptions,
  type GetOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  putParts,
} from "../ports/ObjectStore.js";

/** Passes every call to the inner store; a decorator overrides only the calls it changes. */
export abstract class ObjectStoreDecorator implements ObjectStore {
  constructor(protected readonly inner: ObjectStore) {}

  get location(): string {
    return this.inner.location;
  }

  get writeAlignment(): number | undefined {
    return this.inner.writeAlignment;
  }

  get stagedPutsHidden(): boolean | undefined {
    return this.inner.stagedPutsHidden;
  }

  commitStaged(options?: CallOptions): Promise<void> {
    return this.inner.commitStaged(options);
  }
  discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.inner.discardStaged(owner, options);
  }
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.inner.put(key, data, options);
  }
  putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    return putParts(this.inner, key, parts, options);
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    return this.inner.get(key, options);
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
