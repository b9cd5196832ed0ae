import { randomBytes } from "node:crypto";
import { constants, type Dirent } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, statfs, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CairnError } from "../../errors/CairnError.js";
import { formatBytes } from "../../units/formatBytes.js";
import { DIRECT_ALIGNMENT, isPageAligned } from "../chunks/SharedChunk.js";
import { assertKey, assertPrefix } from "../ports/assertKey.js";
import type { CallOptions, GetOptions, ObjectInfo, ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { throwIfAborted } from "../ports/throwIfAborted.js";
import { closeFd, fstatFd, fsyncFd, ftruncateFd, openFd, readAll, statOrMissing, writevAll } from "./fdIo.js";
import { fsError } from "./fsError.js";
import { syncFilesystem } from "./syncFilesystem.js";

const TEMP_MARK = ".tmp-";
/** Free space kept for plain puts by default (see LocalObjectStoreOptions.reserveBytes)... */
const DEFAULT_RESERVE_BYTES = 64 * 1024 * 1024;
/** ...but at most this share of a small filesystem. */
const DEFAULT_RESERVE_SHARE = 0.02;
/** Free space is asked of the filesystem again after this many staged bytes (other writers). */
const FREE_SPACE_RECHECK_BYTES = 256 * 1024 * 1024;

export interface LocalObjectStoreOptions {
  /** Staged bytes after which writeback starts in the background (see startWritebackIfDue). */
  writebackEveryBytes?: number;
  /**
   * Free space staged puts (a backup's chunks and indexes) leave untouched, so that plain puts —
   * lock records, manifests — still fit on a repository that backups filled: prune, GC and verify
   * can then run, and a backup that got to its seal can write its manifest. Default 64 MiB, at most
   * 2% of the filesystem. 0 turns it off.
   */
  reserveBytes?: number;
}

/** Staged objects after which a background writeback runs even if all were written O_DIRECT (4 GiB of packs). */
const WRITEBACK_EVERY_OBJECTS = 1024;

/** Staged puts at least this large from page-aligned memory bypass the page cache. */
const DIRECT_MIN_BYTES = 64 * 1024;

/**
 * `data` extended to whole pages when it starts on a page and its memory has room up to the next
 * page boundary (SharedChunk strides do), else undefined: what O_DIRECT can write.
 */
function pagePadded(data: Uint8Array): Uint8Array | undefined {
  if (data.length < DIRECT_MIN_BYTES || !isPageAligned(data)) return undefined;
  const length = Math.ceil(data.length / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  if (data.byteOffset + length > data.buffer.byteLength) return undefined;
  return new Uint8Array(data.buffer, data.byteOffset, length);
}

/**
 * The parts as O_DIRECT can write them one after another (each whole pages from page-aligned
 * memory, the last one extended by pagePadded), or undefined. A pack of chunk frames padded to
 * writeAlignment (format §6a) qualifies.
 */
function pagePaddedParts(parts: readonly Uint8Array[], size: number): Uint8Array[] | undefined {
  if (size < DIRECT_MIN_BYTES || parts.length === 0) return undefined;
  if (parts.length === 1) {
    const one = pagePadded(parts[0]!);
    return one ? [one] : undefined;
  }
  const out: Uint8Array[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (!isPageAligned(p)) return undefined;
    if (i < parts.length - 1) {
      if (p.length % DIRECT_ALIGNMENT !== 0) return undefined;
      out.push(p);
    } else {
      const length = Math.ceil(p.length / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
      if (p.byteOffset + length > p.buffer.byteLength) return undefined;
      out.push(new Uint8Array(p.buffer, p.byteOffset, length));
    }
  }
  return out;
}

/**
 * ObjectStore on a local (or SAN-mounted) filesystem. Each key is a file under `root`.
 * put = write `.<name>.tmp-<random>` beside the target, fsync it, rename over the target, fsync the
 * directory: atomic and durable. Temporaries start with `.` and are never listed.
 * A staged put writes the temporary without fsync and remembers it; commitStaged() syncs the whole
 * filesystem once (syncfs), renames every staged temporary into place and syncs again: a visible
 * object is always durable, and a backup pays two syncs instead of two fsyncs per chunk. Temporaries
 * a background writeback sync has made durable are renamed into place right after it, while the
 * backup goes on, so the commit renames only the last few. A backup that gives up deletes its own
 * staged temporaries (discardStaged), so a failure on a full disk frees what it used. Staged puts
 * leave a reserve of free space for plain ones (LocalObjectStoreOptions.reserveBytes).
 */
export class LocalObjectStore implements ObjectStore {
  readonly location: string;
  private readonly root: string;
  /** Directories known to exist (saves a mkdir per put). */
  private readonly madeDirs = new Set<string>();
  /** False once the filesystem refused O_DIRECT (see writeBypassingCache). */
  private directWrites = true;
  /**
   * Temporary names: a random prefix per store and a counter, not random bytes per put (thousands
   * of puts per backup; O_EXCL still refuses a clash with another writer).
   */
  private readonly tempPrefix = randomBytes(6).toString("hex");

  private tempSeq = 0;

  /** Staged puts are temporaries until a sync has made them durable (see the port). */
  readonly stagedPutsHidden = true;

  /** Frames padded to this are written with O_DIRECT whole (no ftruncate). */
  get writeAlignment(): number | undefined {
    return this.directWrites ? DIRECT_ALIGNMENT : undefined;
  }

  private readonly writebackEveryBytes: number;
  private readonly reserveOption: number | undefined;

  constructor(root: string, options: LocalObjectStoreOptions = {}) {
    this.root = resolve(root);
    this.location = this.root;
    this.writebackEveryBytes = options.writebackEveryBytes ?? 128 * 1024 * 1024;
    this.reserveOption = options.reserveBytes;
  }

  private path(key: string): string {
    assertKey(key, this.location);
    return join(this.root, key);
  }

  /** Target → its staged temporary, until renamed or discarded: get() reads it meanwhile. */
  private readonly stagedTemps = new Map<string, string>();
  private forgetTemps(batch: readonly Staged[]): void {
    for (const b of batch) if (this.stagedTemps.get(b.target) === b.temp) this.stagedTemps.delete(b.target);
  }

  /** Staged puts written and not yet taken by a writeback or a commit. */
  private staged: Staged[] = [];
  /** Staged bytes since the last background writeback started. */
  private unflushedBytes = 0;
  private unflushedObjects = 0;
  private writeback: Promise<void> | undefined;
  /** A background rename that failed: the next commitStaged() reports it. */
  private publishFailure: unknown;
  /** Background renames happened since the last commit (they are durable only after its sync). */
  private publishedSinceCommit = false;
  /**
   * Free bytes as last asked of the filesystem, less every staged put since (reserved before its
   * write, so puts in flight together cannot all take the last of it). Undefined: not asked yet.
   */
  private freeEstimate: number | undefined;
  private reserve = 0;
  private claimedUnwritten = 0;
  private stagedSinceStatfs = 0;
  private statfsCall: Promise<void> | undefined;

  put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    return this.putParts(key, [data], options);
  }

  async putParts(key: string, parts: readonly Uint8Array[], options?: PutOptions): Promise<void> {
    const target = this.path(key);
    throwIfAborted(options?.signal, `put ${key}`);
    const size = parts.reduce((n, p) => n + p.length, 0);
    const dir = dirname(target);
    const temp = join(
      dir,
      `.${key.split("/").pop()}${TEMP_MARK}${this.tempPrefix}${(this.tempSeq++).toString(36)}`,
    );
    const claim = options?.staged ? await this.claimSpace(key, size) : 0;
    let written = false;
    try {
      if (!this.madeDirs.has(dir)) {
        await mkdir(dir, { recursive: true });
        this.madeDirs.add(dir);
      }
      const direct = options?.staged && this.directWrites && size >= DIRECT_MIN_BYTES;
      const padded = direct ? pagePaddedParts(parts, size) : undefined;
      let cached = size;
      if (padded) {
        if (await this.writeBypassingCache(temp, parts, size, padded)) cached = 0;
      } else {
        const fd = await openFd(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o640);
        try {
          await writevAll(fd, parts, 0);
          if (!options?.staged) await fsyncFd(fd);
        } finally {
          await closeFd(fd);
        }
      }
      throwIfAborted(options?.signal, `put ${key}`);
      if (options?.staged) {
        this.staged.push({ temp, target, owner: options.owner });
        this.stagedTemps.set(target, temp);
        written = true;
        this.startWritebackIfDue(cached);
        return;
      }
      await rename(temp, target);
      await syncDir(dir);
    } catch (e) {
      await unlink(temp).catch(() => {});
      throw fsError(e, this.location, `writing ${key}`);
    } finally {
      this.settleSpace(claim, written);
    }
  }

  /**
   * Claims room for a staged put of `bytes`, or refuses it when that would leave less than the
   * reserve free. The filesystem is asked again before refusing, and every FREE_SPACE_RECHECK_BYTES
   * (other writers). Returns the bytes claimed (settleSpace once the put is done).
   */
  private async claimSpace(key: string, bytes: number): Promise<number> {
    if (this.reserveOption === 0) return 0;
    const claim = Math.ceil(bytes / 4096) * 4096 + 4096; // whole blocks, and the inode's
    this.stagedSinceStatfs += claim;
    const short = () => this.freeEstimate === undefined || this.freeEstimate - claim < this.reserve;
    if (short() || this.stagedSinceStatfs >= FREE_SPACE_RECHECK_BYTES) await this.askFreeSpace(key);
    if (short()) {
      throw new CairnError(
        "resource-exhausted",
        `writing ${key} in repository ${this.location} failed: no space left for backup data on the repository's filesystem (${formatBytes(Math.max(0, this.freeEstimate ?? 0))} free, ${formatBytes(this.reserve)} kept for lock records and manifests)`,
        { hint: "free space on the repository volume (prune and gc, or grow it), then retry the backup" },
      );
    }
    this.freeEstimate! -= claim;
    this.claimedUnwritten += claim;
    return claim;
  }

  /** A claimed put's write is done (`used`: its blocks are taken now) or failed (they are not). */
  private settleSpace(claim: number, used: boolean): void {
    if (claim === 0) return;
    this.claimedUnwritten -= claim;
    if (!used && this.freeEstimate !== undefined) this.freeEstimate += claim;
  }

  /** One statfs at a time: concurrent puts share its answer. */
  private askFreeSpace(key: string): Promise<void> {
    this.statfsCall ??= statfs(this.root)
      .then((s) => {
        // Claimed puts not written yet do not show in the filesystem's count.
        this.freeEstimate = s.bavail * s.bsize - this.claimedUnwritten;
        this.reserve =
          this.reserveOption ?? Math.min(DEFAULT_RESERVE_BYTES, DEFAULT_RESERVE_SHARE * s.blocks * s.bsize);
        this.stagedSinceStatfs = 0;
      })
      .catch((e) => {
        throw fsError(e, this.location, `writing ${key}`);
      })
      .finally(() => {
        this.statfsCall = undefined;
      });
    return this.statfsCall;
  }

  /**
   * A staged chunk from a page-aligned buffer is written with O_DIRECT: a backup's gigabytes then
   * neither pass through nor evict the host's page cache (the VMs' cache), and the copy into it —
   * the largest CPU cost of a full backup on a 2-core host — disappears. O_DIRECT needs whole pages:
   * a frame padded to writeAlignment (format §5) is written as it is; any other is written to the
   * end of its last page and ftruncate cuts the file to the object's size. A filesystem that
   * refuses O_DIRECT (tmpfs) gets buffered writes from then on.
   * commitStaged's syncfs still makes the object durable.
   */
  private async writeBypassingCache(
    temp: string,
    parts: readonly Uint8Array[],
    size: number,
    padded: readonly Uint8Array[],
  ): Promise<boolean> {
    const flags = constants.O_WRONLY | constants.O_CREAT;
    let fd: number | undefined;
    try {
      fd = await openFd(temp, flags | constants.O_EXCL | constants.O_DIRECT, 0o640);
      await writevAll(fd, padded, 0);
      if (padded.reduce((n, p) => n + p.length, 0) !== size) await ftruncateFd(fd, size);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
      // Refused at open (after creating the file) or at the write: rewrite it through the cache.
      this.directWrites = false;
      if (fd !== undefined) await closeFd(fd);
      fd = await openFd(temp, flags | constants.O_TRUNC, 0o640);
      await writevAll(fd, parts, 0);
      return false;
    } finally {
      if (fd !== undefined) await closeFd(fd);
    }
  }

  /**
   * Left alone, the kernel starts writing dirty pages back only when they reach ~10% of memory, so a
   * backup's data would all reach the disk inside the commit's sync, after the reading is done. A
   * background syncfs every `writebackEveryBytes` overlaps that writeback with the backup. It changes
   * no guarantee: durability still comes from the syncs in commitStaged(), which report any error.
   * Only bytes written through the page cache count: O_DIRECT writes leave nothing to write back, and
   * each sync is a `sync -f` process forked from this (large) one. Every WRITEBACK_EVERY_OBJECTS
   * staged objects one runs all the same, so a multi-TiB backup's commit does not rename (and hold)
   * hundreds of thousands of temporaries.
   */
  private startWritebackIfDue(bytes: number): void {
    this.unflushedBytes += bytes;
    this.unflushedObjects++;
    if (
      this.writeback ||
      (this.unflushedBytes < this.writebackEveryBytes && this.unflushedObjects < WRITEBACK_EVERY_OBJECTS)
    )
      return;
    this.unflushedBytes = 0;
    this.unflushedObjects = 0;
    // Every temporary staged so far was fully written before this sync starts: once it returns they
    // are durable and may become visible (the contract allows it), so the commit does not rename
    // thousands of chunks while the backup waits. The renames themselves become durable at the
    // commit's last sync, before any manifest names them.
    const ready = this.staged;
    this.staged = [];
    this.writeback = syncFilesystem(this.root)
      .then(async () => {
        this.publishedSinceCommit = true;
        await renameAll(ready, 4).catch((e) => {
          this.publishFailure ??= e;
        });
        this.forgetTemps(ready);
      })
      .catch(() => {
        // The sync failed: these stay staged, and the commit's own syncs decide.
        this.staged.unshift(...ready);
      })
      .finally(() => {
        this.writeback = undefined;
      });
  }

  async commitStaged(options?: CallOptions): Promise<void> {
    // A writeback owns the temporaries it took until its renames are done.
    while (this.writeback) await this.writeback;
    const failure = this.publishFailure;
    this.publishFailure = undefined;
    const published = this.publishedSinceCommit;
    this.publishedSinceCommit = false;
    const batch = this.staged;
    this.staged = [];
    this.unflushedBytes = 0;
    this.unflushedObjects = 0;
    try {
      // A background rename failed: that object is still an (invisible) temporary, not committed.
      if (failure !== undefined) throw failure;
      if (batch.length === 0 && !published) return;
      throwIfAborted(options?.signal, "commit staged objects");
      if (batch.length > 0) {
        await syncFilesystem(this.root, options?.signal);
        await renameAll(batch, 32);
        this.forgetTemps(batch);
      }
      // Makes the renames durable, the background ones included.
      await syncFilesystem(this.root, options?.signal);
    } catch (e) {
      // Not yet renamed temporaries stay invisible; sweepTemporaries() removes them later.
      throw fsError(e, this.location, `committing ${batch.length} staged objects`);
    }
  }

  async discardStaged(owner: object, options?: CallOptions): Promise<void> {
    // A writeback owns the temporaries it took; once it is done they are visible objects (GC's).
    while (this.writeback) await this.writeback;
    throwIfAborted(options?.signal, "discard staged objects");
    const mine = this.staged.filter((s) => s.owner === owner);
    if (mine.length === 0) return;
    this.staged = this.staged.filter((s) => s.owner !== owner);
    this.forgetTemps(mine);
    this.freeEstimate = undefined; // space given back: ask the filesystem again
    try {
      for (const s of mine) await rm(s.temp, { force: true });
    } catch (e) {
      // Those left are invisible temporaries: GC's sweep removes them.
      throw fsError(e, this.location, `discarding ${mine.length} staged objects`);
    }
  }

  async get(key: string, options?: GetOptions): Promise<Buffer> {
    const p = this.path(key);
    throwIfAborted(options?.signal, `get ${key}`);
    try {
      const fd = await this.openForRead(p);
      try {
        const size = (await fstatFd(fd)).size;
        const start = Math.min(options?.range?.offset ?? 0, size);
        const end = options?.range ? Math.min(start + options.range.length, size) : size;
        const buf = Buffer.allocUnsafe(end - start);
        const got = await readAll(fd, buf, start);
        return got === buf.length ? buf : buf.subarray(0, got);
      } finally {
        await closeFd(fd);
      }
    } catch (e) {
      throw fsError(e, this.location, `reading ${key}`);
    }
  }

  /**
   * Opens an object, or this store's staged temporary of it once its put resolved: a backup reads
   * back a chunk it wrote itself (a rewrite of a chunk it already processed). head and list still
   * do not show staged objects, so no other writer deduplicates against them before they are durable.
   */
  private async openForRead(p: string): Promise<number> {
    try {
      return await openFd(p, constants.O_RDONLY);
    } catch (e) {
      const temp = this.stagedTemps.get(p);
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || temp === undefined) throw e;
      return openFd(temp, constants.O_RDONLY).catch((e2: NodeJS.ErrnoException) => {
        // Renamed into place meanwhile.
        if (e2.code === "ENOENT") return openFd(p, constants.O_RDONLY);
        throw e2;
      });
    }
  }

  async head(key: string, options?: CallOptions): Promise<ObjectInfo | undefined> {
    const p = this.path(key);
    throwIfAborted(options?.signal, `head ${key}`);
    // Callback stat: a missing object (every new chunk's dedup check) costs no exception.
    const r = await statOrMissing(p);
    if (r instanceof Error) throw fsError(r, this.location, `stat ${key}`);
    return r?.isFile() ? { key, size: r.size, lastModified: r.mtime } : undefined;
  }

  async delete(key: string, options?: CallOptions): Promise<void> {
    const p = this.path(key);
    throwIfAborted(options?.signal, `delete ${key}`);
    try {
      await rm(p, { force: true });
    } catch (e) {
      throw fsError(e, this.location, `deleting ${key}`);
    }
  }

  async *list(prefix: string, options?: CallOptions): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix, this.location);
    // Walk from the deepest directory the prefix names, then filter by the full prefix.
    const slash = prefix.lastIndexOf("/");
    const base = slash < 0 ? "" : prefix.slice(0, slash);
    yield* this.walk(base, prefix, options?.signal);
  }

  private async *walk(
    rel: string,
    prefix: string,
    signal: AbortSignal | undefined,
  ): AsyncIterable<ObjectInfo> {
    throwIfAborted(signal, `list ${prefix}`);
    let entries: Dirent[];
    try {
      entries = await readdir(join(this.root, rel), { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw fsError(e, this.location, `listing ${prefix}`);
    }
    for (const d of entries) {
      if (d.name.startsWith(".")) continue; // temporaries and hidden files are not objects
      const key = rel === "" ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        if (mayHoldPrefix(key, prefix)) yield* this.walk(key, prefix, signal);
      } else if (d.isFile() && key.startsWith(prefix)) {
        try {
          const s = await stat(join(this.root, key));
          yield { key, size: s.size, lastModified: s.mtime };
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOENT")
            throw fsError(e, this.location, `listing ${prefix}`);
        }
      }
    }
  }

  /**
   * Removes temporaries left by a writer that died between create and rename (not part of the
   * port: only the local backend has them). Only those older than `olderThanMs` are touched,
   * so a running writer's temporaries are safe. `under` limits the sweep to keys with that prefix.
   */
  async sweepTemporaries(olderThanMs: number, signal?: AbortSignal, under = ""): Promise<number> {
    if (under !== "") assertPrefix(under, this.location);
    let removed = 0;
    const cutoff = Date.now() - olderThanMs;
    const visit = async (rel: string): Promise<void> => {
      throwIfAborted(signal, "sweeping temporaries");
      let entries: Dirent[];
      try {
        entries = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const d of entries) {
        const p = join(this.root, rel, d.name);
        const key = rel === "" ? d.name : `${rel}/${d.name}`;
        if (d.isDirectory()) {
          if (mayHoldPrefix(key, under)) await visit(key);
        } else if (d.name.includes(TEMP_MARK) && key.startsWith(under)) {
          const s = await stat(p).catch(() => undefined);
          if (s && s.mtimeMs < cutoff) {
            await rm(p, { force: true });
            removed++;
          }
        }
      }
    };
    await visit("");
    return removed;
  }
}

/** True when directory `dirKey` may hold keys starting with `prefix` (it is under it, or on its path). */
function mayHoldPrefix(dirKey: string, prefix: string): boolean {
  return dirKey.startsWith(prefix) || prefix.startsWith(`${dirKey}/`);
}

interface Staged {
  temp: string;
  target: string;
  owner: object | undefined;
}

/** Renames temporaries into place, `width` at a time (each rename is atomic on its own). */
async function renameAll(batch: readonly Staged[], width: number): Promise<void> {
  let next = 0;
  const renamer = async () => {
    while (next < batch.length) {
      const { temp, target } = batch[next++]!;
      await rename(temp, target);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, batch.length) }, renamer));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems (tmpfs on old kernels, some FUSE) refuse fsync on directories: nothing to flush.
    if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
  } finally {
    await fh.close();
  }
}

export const _localConforms = LocalObjectStore satisfies new (root: string) => ObjectStore;
