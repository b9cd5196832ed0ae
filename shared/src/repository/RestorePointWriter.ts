import { randomBytes } from "node:crypto";
import { CairnError } from "../errors/CairnError.js";
import { DiskWriter, type DiskWriterOptions } from "./DiskWriter.js";
import type { HeldLock } from "./locks/RepositoryLock.js";
import {
  type Consistency,
  type DiskEntry,
  newSnapshotId,
  type SnapshotManifest,
} from "./manifest/SnapshotManifest.js";
import { PackWriter, type WrittenPackIndex } from "./packs/PackWriter.js";
import type { Repository } from "./Repository.js";

export interface VmIdentity {
  uuid: string;
  name: string;
}

export interface SealOptions {
  domainXml: string;
  consistency: Consistency;
  labels?: Record<string, string>;
  protected?: boolean;
  extra?: Record<string, unknown>;
  signal?: AbortSignal;
}

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
  /** Chunks seen in this backup (never shared across backups: GC may run between them). */
  readonly knownChunks = new Set<string>();
  /** Uploads in progress, so two disks writing the same new chunk upload it once. */
  readonly uploads = new Map<string, Promise<void>>();
  /** Where this backup's new chunks go in a version-2 repository (format §6a). */
  readonly packs: PackWriter | undefined;

  constructor(
    readonly repository: Repository,
    readonly vm: VmIdentity,
    private readonly lock: HeldLock,
  ) {
    this.snapshotId = newSnapshotId(this.startedAt, randomBytes(4).toString("hex"));
    this.packs = repository.packed
      ? new PackWriter(repository.store, this, (records, signal) =>
          repository.putPackIndex(records, { signal, staged: true, owner: this }),
        )
      : undefined;
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
      extra: options.extra ?? {},
    };
    let packIndexes: WrittenPackIndex[] = [];
    try {
      if (this.packs) packIndexes = await this.packs.finish();
      // Chunks, packs and indexes were staged: make them durable before the manifest names them.
      await this.repository.store.commitStaged({ signal: options.signal });
      await this.repository.putSnapshot(manifest, options.signal);
      this.state = "sealed";
    } finally {
      if (this.state !== "sealed") await this.abort();
    }
    for (const p of packIndexes) this.repository.addPackRecords(p.id, p.records);
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
      await this.packs?.settle();
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
