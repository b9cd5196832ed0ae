/**
 * The repository's storage port: a flat key → bytes namespace.
 *
 * Contract (checked for every adapter by test/support/objectStoreContract.ts):
 * - Keys are `/`-separated relative paths of `[A-Za-z0-9._-]` segments, never starting with `.`.
 * - `put` is atomic and durable: once it resolves the whole object is stored and survives a crash;
 *   a reader never sees a prefix. Overwriting an existing key replaces it atomically.
 * - `put` with `staged: true` may defer both: the object may stay invisible (and is lost in a crash)
 *   until `commitStaged()` resolves, after which every object staged on this store so far is visible
 *   and durable. A visible object is always complete and durable. Stores whose puts are durable
 *   anyway (S3, memory) treat staged puts as plain puts and `commitStaged` as a no-op. This turns a
 *   backup's thousands of per-chunk fsyncs into a couple of filesystem syncs at seal time.
 * - `put` does not keep `data` once it settles: the caller reuses the buffer (a chunk buffer in shared
 *   memory, see SharedChunk) for the next chunk.
 * - `get` returns the whole object or, with `range`, exactly `[offset, offset+length)` clipped to
 *   the object; a missing key rejects with CairnError("not-found").
 * - `head` resolves `undefined` for a missing key.
 * - `delete` is idempotent (deleting a missing key succeeds).
 * - `list(prefix)` yields every stored key starting with `prefix`, in no particular order, with its
 *   size and last-modified time; in-progress temporaries are never listed.
 * - No conditional writes (Swift's s3api lacks If-None-Match): callers must not need them.
 * - Failures are CairnErrors: "unavailable"/"timeout" are transient (retry may help), everything
 *   else is permanent ("resource-exhausted" for a full disk or quota, "permission-denied", ...).
 * - Every call honours its AbortSignal and rejects with CairnError("aborted").
 */
export interface ObjectStore {
  /** Human-readable location for messages, e.g. `/srv/backups` or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * Objects whose length is a multiple of this, put from memory aligned to it, are written
   * cheapest (LocalObjectStore: O_DIRECT, bypassing the page cache). Writers may pad frames to it
   * (format §5). Absent: no preference.
   */
  readonly writeAlignment?: number | undefined;
  /**
   * True when a staged put stays invisible to head/list (and to other store instances' get) at least
   * until it has resolved (it is shown by commitStaged, or by the store's own later writeback):
   * LocalObjectStore's temporaries. The same instance's get may read it once its put resolved (a
   * backup reading back a chunk it wrote, format §6a).
   * A writer may then check a content-addressed key's existence beside a staged put of it, and the
   * check reports the store as it was. Absent/false (S3, memory): staged puts show at once.
   */
  readonly stagedPutsHidden?: boolean | undefined;
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void>;
  /**
   * Optional: put() of the concatenation of `parts`, without making it (a pack of chunk frames,
   * format §6a). Same contract as put(); the parts are not kept once it settles. Callers use
   * putParts() below, which concatenates for stores without it.
   */
  putParts?(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void>;
  /** Makes every staged put so far visible and durable (see the contract above). */
  commitStaged(options?: CallOptions): Promise<void>;
  /**
   * Drops the staged puts made with `owner` (PutOptions) that are not visible yet, freeing their
   * space now instead of at the next GC: a backup that gives up calls it once every put it made has
   * settled. Staged puts of other owners are untouched; ones already shown stay, unreferenced, for
   * GC. No-op where staged puts show at once (S3, memory).
   */
  discardStaged(owner: object, options?: CallOptions): Promise<void>;
  get(key: string, options?: GetOptions): Promise<Buffer>;
  head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined>;
  delete(key: string, options?: CallOptions): Promise<void>;
  list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo>;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface PutOptions extends CallOptions {
  /** Defer visibility and durability to the next commitStaged(). */
  staged?: boolean | undefined;
  /** Who staged it (compared by identity), so discardStaged(owner) can drop it. */
  owner?: object | undefined;
}

export interface GetOptions extends CallOptions {
  range?: { offset: number; length: number } | undefined;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

const KEY_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

/** True for keys the contract allows (adapters reject others with "invalid-argument"). */
export function isValidKey(key: string): boolean {
  return KEY_RE.test(key);
}

/** store.putParts when the store has it, else one put of the concatenated parts. */
export function putParts(
  store: ObjectStore,
  key: string,
  parts: readonly Uint8Array[],
  options?: PutOptions,
): Promise<void> {
  if (store.putParts) return store.putParts(key, parts, options);
  return store.put(key, parts.length === 1 ? parts[0]! : Buffer.concat(parts), options);
}
