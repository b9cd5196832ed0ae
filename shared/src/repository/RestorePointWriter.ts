import { randomBytes } from "node:crypto";
import { CairnError } from "../errors/CairnError.js";
import type { SharedChunk } from "./chunks/SharedChunk.js";
import { DiskWriter, type DiskWriterOptions } from "./DiskWriter.js";
import type { DiskIndex } from "./index/DiskIndex.js";
import { indexKey } from "./layout.js";
import type { HeldLock } from "./locks/RepositoryLock.js";
import {
  type Consistency,
  type DiskEntry,
  newSnapshotId,
  type SnapshotManifest,
} from "./manifest/SnapshotManifest.js";
import type { Repository } from "./Repository.js";
import type { ChunkSink } from "./sinks/ChunkSink.js";
import { LooseChunkSink } from "./sinks/LooseChunkSink.js";
import { PackChunkSink } from "./sinks/PackChunkSink.js";

export interface VmIdentity {
  uuid: string;
  name: string;
}

export interface SealOptions {
  domainXml: string;
  consistency: Consistency;
  labels?: Record<string, string>;
  protected?: boolean;
  /** The job sealing it (manifest jobId, format §7). */
  jobId?: string;
  extra?: Record<string, unknown>;
  signal?: AbortSignal;
}

/** What storeChunk did for its caller: only the call that stored a chunk reports it new. */
export interface StoredChunk {
  isNew: boolean;
  /** Framed bytes this call wrote (a chunk found stored may still have been written: ChunkSink). */
  bytesStored: number;
}

const NOT_STORED: StoredChunk = { isNew: false, bytesStored: 0 };

/**
 * One VM backup in progress (a snapshot before its seal). Add a DiskWriter per disk, write and
 * finish each, then seal(): the manifest put is the only thing that makes the snapshot exist.
 * abort() deletes what is still staged; it (or never sealing) leaves only unreferenced chunks that
 * GC removes.
 */
export class RestorePointWriter {
  readonly snapshotId: string;
  readonly startedAt = new Date();
  private readonly disks = new Map<string, DiskWriter>();
  private state: "open" | "sealed" | "aborted" = "open";
  /** Chunks known stored in this backup (never shared across backups: GC may run between them). */
  private readonly known = new Set<string>();
  /** Chunks being stored, so two disks writing the same new chunk store it once. */
  private readonly storing = new Map<string, Promise<StoredChunk>>();
  /** Where this backup's new chunks go: loose objects (format version 1) or packs (§6a). */
  private readonly sink: ChunkSink;

  constructor(
    readonly repository: Repository,
    readonly vm: VmIdentity,
    private readonly lock: HeldLock,
  ) {
    this.snapshotId = newSnapshotId(this.startedAt, randomBytes(4).toString("hex"));
    this.sink = repository.packed
      ? new PackChunkSink(repository, this)
      : new LooseChunkSink(repository.store, this);
  }

  /**
   * A buffer for one chunk's plaintext, shared with the chunk workers (not zero-filled: it held an
   * earlier chunk). Readers fill it and hand it to DiskWriter.writeChunk, which releases it.
   */
  acquireChunk(length: number): SharedChunk {
    return this.repository.pool.acquireShared(length);
  }

  releaseChunk(chunk: SharedChunk): void {
    this.repository.pool.releaseShared(chunk);
  }

  /** Chunks a sealed restore point names (a parent's): under our shared lock they stay stored. */
  assumeStored(id: string): void {
    this.known.add(id);
  }

  /**
   * Stores a chunk unless this backup or the repository has it; `framed` is its frame, or made by
   * `frame()` only when it is needed. Resolves once the frame's buffer may be reused.
   */
  async storeChunk(
    id: string,
    framed: Uint8Array | undefined,
    frame: () => Promise<Uint8Array>,
    signal: AbortSignal | undefined,
  ): Promise<StoredChunk> {
    if (this.known.has(id)) return NOT_STORED;
    const pending = this.storing.get(id);
    if (pending) {
      await pending;
      return NOT_STORED;
    }
    const stored = this.storeNew(id, framed, frame, signal);
    this.storing.set(id, stored);
    try {
      const r = await stored;
      this.known.add(id);
      return r;
    } finally {
      this.storing.delete(id);
    }
  }

  private async storeNew(
    id: string,
    framed: Uint8Array | undefined,
    frame: () => Promise<Uint8Array>,
    signal: AbortSignal | undefined,
  ): Promise<StoredChunk> {
    if (await this.sink.has(id, signal)) return NOT_STORED;
    const f = framed ?? (await frame());
    const isNew = await this.sink.put(id, f, signal);
    return { isNew, bytesStored: f.length };
  }

  /** Reads a chunk back, including one this backup stored and that is not sealed yet. */
  readChunk(id: string, what: string, signal: AbortSignal | undefined): Promise<Buffer> {
    return this.repository.readChunk(id, what, signal, this.sink.placeOf(id));
  }

  /** Stores a disk's index (staged, like the chunks; identical indexes dedup); returns its id. */
  async putIndex(index: DiskIndex, signal: AbortSignal | undefined): Promise<string> {
    const { pool, store } = this.repository;
    const h = await pool.hash(index.encode());
    if (!(await store.head(indexKey(h.id), { signal }))) {
      const f = await pool.frame("index", h.id, h.data);
      await store.put(indexKey(h.id), f.framed, { signal, staged: true, owner: this });
    }
    return h.id;
  }

  /** Starts a disk. With `parent`, chunks not written are taken from the parent restore point. */
  async addDisk(options: DiskWriterOptions): Promise<DiskWriter> {
    this.assertOpen();
    if (this.disks.has(options.target)) {
      throw new CairnError(
        "invalid-argument",
        `disk ${options.target} was added twice to snapshot ${this.snapshotId}`,
      );
    }
    const w = await DiskWriter.create(this, options);
    this.disks.set(options.target, w);
    return w;
  }

  /** Seals the snapshot after every disk finished; returns the sealed manifest. */
  async seal(options: SealOptions): Promise<SnapshotManifest> {
    this.assertOpen();
    const entries: DiskEntry[] = [];
    for (const [target, w] of this.disks) {
      const e = w.entry;
      if (!e) {
        throw new CairnError(
          "failed-precondition",
          `disk ${target} of snapshot ${this.snapshotId} was not finished before seal`,
        );
      }
      entries.push(e);
    }
    const sum = (f: (d: DiskEntry) => number) => entries.reduce((a, d) => a + f(d), 0);
    const manifest: SnapshotManifest = {
      formatVersion: 1,
      id: this.snapshotId,
      vm: { uuid: this.vm.uuid, name: this.vm.name },
      domainXml: options.domainXml,
      disks: entries,
      consistency: options.consistency,
      stats: {
        bytesRead: sum((d) => d.stats.bytesRead),
        bytesNew: sum((d) => d.stats.bytesNew),
        bytesStored: sum((d) => d.stats.bytesStored),
      },
      startedAt: this.startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      labels: options.labels ?? {},
      protected: options.protected ?? false,
      ...(options.jobId !== undefined ? { jobId: options.jobId } : {}),
      extra: options.extra ?? {},
    };
    try {
      await this.sink.flush(options.signal);
      // Staged: durable with the chunks, before the manifest, so a sealed snapshot has its marker.
      await this.repository.putVmMarker(manifest, { signal: options.signal, staged: true, owner: this });
      // Chunks, packs and indexes were staged: make them durable before the manifest names them.
      await this.repository.store.commitStaged({ signal: options.signal });
      await this.repository.putSnapshot(manifest, options.signal);
      this.state = "sealed";
    } finally {
      if (this.state !== "sealed") await this.abort();
    }
    this.sink.sealed();
    await this.lock.release();
    return manifest;
  }

  /**
   * Gives up: nothing is sealed. Chunks still staged are deleted (a backup that failed on a full
   * disk gives its space back); ones already visible stay for GC. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.state === "sealed") return;
    this.state = "aborted";
    try {
      await Promise.all([...this.disks.values()].map((w) => w.abandon()));
      // No pack index: the packs stay unlisted, deleted below or, once visible, by GC.
      await this.sink.settle(undefined);
      // Before the lock goes: under it, GC leaves these temporaries alone.
      await this.repository.store.discardStaged(this).catch(() => {});
    } finally {
      await this.lock.release().catch(() => {});
    }
  }

  private assertOpen(): void {
    if (this.state !== "open") {
      throw new CairnError("failed-precondition", `snapshot ${this.snapshotId} is already ${this.state}`);
    }
  }
}
