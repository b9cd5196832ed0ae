import { ObjectStoreDecorator } from "../../shared/src/repository/decorators/ObjectStoreDecorator.js";
import type { CallOptions, GetOptions, ObjectInfo } from "../../shared/src/repository/ports/ObjectStore.js";

/** Passes every call through and counts gets and lists per key prefix (the part before the first /). */
export class CountingObjectStore extends ObjectStoreDecorator {
  readonly gets = new Map<string, number>();
  readonly lists = new Map<string, number>();

  /** Gets of keys under `prefix` so far. */
  getsUnder(prefix: string): number {
    return this.gets.get(prefix) ?? 0;
  }
  reset(): void {
    this.gets.clear();
    this.lists.clear();
  }
  override get(key: string, options?: GetOptions): Promise<Buffer> {
    const p = `${key.split("/")[0]}/`;
    this.gets.set(p, (this.gets.get(p) ?? 0) + 1);
    return this.inner.get(key, options);
  }
  override list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    this.lists.set(prefix, (this.lists.get(prefix) ?? 0) + 1);
    return this.inner.list(prefix, options);
  }
}
