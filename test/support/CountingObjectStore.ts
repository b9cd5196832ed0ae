import type {
  CallOptions,
  GetOptions,
  ObjectInfo,
  ObjectStore,
  PutOptions,
} from "../../shared/src/repository/ports/ObjectStore.js";

/** Passes every call through and counts gets and lists per key prefix (the part before the first /). */
export class CountingObjectStore implements ObjectStore {
  readonly gets = new Map<string, number>();
  readonly lists = new Map<string, number>();

  constructor(private readonly inner: ObjectStore) {}

  get location(): string {
    return this.inner.location;
  }
  get writeAlignment(): number | undefined {
    return this.inner.writeAlignment;
  }
  get stagedPutsHidden(): boolean | undefined {
    return this.inner.stagedPutsHidden;
  }
  /** Gets of keys under `prefix` so far. */
  getsUnder(prefix: string): number {
    return this.gets.get(prefix) ?? 0;
  }
  reset(): void {
    this.gets.clear();
    this.lists.clear();
  }
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.inner.put(key, data, options);
  }
  commitStaged(options?: CallOptions): Promise<void> {
    return this.inner.commitStaged(options);
  }
  discardStaged(owner: object, options?: CallOptions): Promise<void> {
    return this.inner.discardStaged(owner, options);
  }
  get(key: string, options?: GetOptions): Promise<Buffer> {
    const p = `${key.split("/")[0]}/`;
    this.gets.set(p, (this.gets.get(p) ?? 0) + 1);
    return this.inner.get(key, options);
  }
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    return this.inner.head(key, options);
  }
  delete(key: string, options?: CallOptions): Promise<void> {
    return this.inner.delete(key, options);
  }
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    this.lists.set(prefix, (this.lists.get(prefix) ?? 0) + 1);
    return this.inner.list(prefix, options);
  }
}
