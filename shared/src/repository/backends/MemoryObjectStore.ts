import { CairnError } from "../../errors/CairnError.js";
import { assertKey, assertPrefix } from "../ports/assertKey.js";
import type { CallOptions, GetOptions, ObjectInfo, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { throwIfAborted } from "../ports/throwIfAborted.js";

/** In-memory ObjectStore for unit tests; passes the same contract suite as the real backends. */
export class MemoryObjectStore implements ObjectStore {
  readonly location: string;
  private readonly objects = new Map<string, { data: Buffer; lastModified: Date }>();

  constructor(name = "memory") {
    this.location = `memory:${name}`;
  }

  /** Puts here are durable on return: nothing is ever staged. */
  async commitStaged(options?: CallOptions): Promise<void> {
    throwIfAborted(options?.signal, "commit staged objects");
  }

  /** Nothing is ever staged here: a given-up backup's objects are unreferenced, GC removes them. */
  async discardStaged(_owner: object, options?: CallOptions): Promise<void> {
    throwIfAborted(options?.signal, "discard staged objects");
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    assertKey(key, this.location);
    throwIfAborted(options?.signal, `put ${key}`);
    this.objects.set(key, { data: Buffer.from(data), lastModified: new Date() });
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    assertKey(key, this.location);
    throwIfAborted(options?.signal, `get ${key}`);
    const o = this.objects.get(key);
    if (!o) throw new CairnError("not-found", `object ${key} not found in repository ${this.location}`);
    const r = options?.range;
    if (!r) return Buffer.from(o.data);
    return Buffer.from(o.data.subarray(r.offset, r.offset + r.length));
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    assertKey(key, this.location);
    throwIfAborted(options?.signal, `head ${key}`);
    const o = this.objects.get(key);
    return o ? { key, size: o.data.length, lastModified: o.lastModified } : undefined;
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    assertKey(key, this.location);
    throwIfAborted(options?.signal, `delete ${key}`);
    this.objects.delete(key);
  }

  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix, this.location);
    for (const [key, o] of [...this.objects]) {
      throwIfAborted(options?.signal, `list ${prefix}`);
      if (key.startsWith(prefix)) yield { key, size: o.data.length, lastModified: o.lastModified };
    }
  }

  /** Test hook: replace stored bytes without going through put (simulates bit rot). */
  tamper(key: string, mutate: (data: Buffer) => void): void {
    const o = this.objects.get(key);
    if (!o) throw new Error(`no object ${key}`);
    mutate(o.data);
  }
}

export const _memoryConforms = MemoryObjectStore satisfies new (name?: string) => ObjectStore;
