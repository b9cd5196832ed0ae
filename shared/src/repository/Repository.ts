import { createHash, createHmac, randomBytes } from "node:crypto";
import { CairnError, isCairnError } from "../errors/CairnError.js";
import { ChunkWorkerPool } from "./chunks/ChunkWorkerPool.js";
import { frame, unframe } from "./chunks/codec.js";
import { configMac } from "./crypto/configMac.js";
import { createMasterKey } from "./crypto/masterKey.js";
import { openRepositoryKeys } from "./crypto/openRepositoryKeys.js";
import type { RepositoryKeys } from "./crypto/RepositoryKeys.js";
import { DiskIndex } from "./index/DiskIndex.js";
import {
  CONFIG_KEY,
  chunkKey,
  indexKey,
  PACK_INDEXES_PREFIX,
  packIndexKey,
  packKey,
  SNAPSHOTS_PREFIX,
  snapshotKey,
  VM_SNAPSHOTS_PREFIX,
  vmSnapshotKey,
} from "./layout.js";
import { acquireLock, type LockOptions } from "./locks/RepositoryLock.js";
import { type SnapshotManifest, snapshotManifestSchema } from "./manifest/SnapshotManifest.js";
import { type ChunkLocation, decodePackIndex, encodePackIndex, type PackRecord } from "./packs/PackIndex.js";
import type { ObjectStore, PutOptions } from "./ports/ObjectStore.js";
import {
  DEFAULT_CHUNK_SIZE,
  FORMAT_VERSION,
  type RepositoryConfig,
  repositoryConfigSchema,
  usesPacks,
} from "./RepositoryConfig.js";
import { RestorePointReader } from "./RestorePointReader.js";
import { RestorePointWriter, type VmIdentity } from "./RestorePointWriter.js";
import { loadRepositoryConfig } from "./readRepositoryConfig.js";

export interface InitOptions {
  chunkSize?: number;
  compressionLevel?: number;
  /** Set to encrypt the repository. There is no default passphrase. */
  passphrase?: string;
  /** 2 (default): chunks in packs; 1: one object per chunk (format §3, §6a). */
  formatVersion?: 1 | 2;
  /** scrypt cost (tests lower it); default 2^15. */
  scryptN?: number;
  workers?: number;
  signal?: AbortSignal;
}

export interface OpenOptions {
  /** Given (non-empty): the repository must be encrypted (format §3.1). */
  passphrase?: string;
  /** The caller knows the repository is encrypted: an unencrypted config is refused (format §3.1). */
  requireEncryption?: boolean;
  workers?: number;
  signal?: AbortSignal;
}

/**
 * An open repository (format: docs/repository-format.md). Owns a worker pool: call close().
 * Writing: beginSnapshot → addDisk → write extents → finish → seal.
 * Reading: listSnapshots / showSnapshot / openDisk.
 */
export class Repository {
  readonly store: ObjectStore;
  readonly config: RepositoryConfig;
  readonly keys: RepositoryKeys | undefined;
  /** The config carries a verified MAC (format §3.1); false when unencrypted or legacy. */
  readonly configAuthenticated: boolean;
  readonly pool: ChunkWorkerPool;

  private constructor(
    store: ObjectStore,
    config: RepositoryConfig,
    keys: RepositoryKeys | undefined,
    configAuthenticated: boolean,
    workers?: number,
  ) {
    this.store = store;
    this.config = config;
    this.keys = keys;
    this.configAuthenticated = configAuthenticated;
    this.pool = new ChunkWorkerPool(keys, config.compression.level, workers);
  }

  /** Chunk id → its frame in a pack, from the pack indexes read so far (format §6a). */
  private readonly located = new Map<string, ChunkLocation>();
  private readonly loadedPackIndexes = new Set<string>();
  private loading: Promise<void> | undefined;

  /** True when new chunks go into packs (format version 2). */
  get packed(): boolean {
    return usesPacks(this.config);
  }

  /** Where a chunk is, as far as the pack indexes read so far know. */
  locate(id: string): ChunkLocation | undefined {
    return this.located.get(id);
  }

  /** Reads the pack indexes not read yet (one listing; concurrent callers share it). */
  async refreshPackIndexes(signal?: AbortSignal): Promise<void> {
    while (this.loading) await this.loading.catch(() => {});
    this.loading = (async () => {
      const listed = new Set<string>();
      for await (const o of this.store.list(PACK_INDEXES_PREFIX, { signal }))
        listed.add(o.key.slice(PACK_INDEXES_PREFIX.length));
      // A pack index we read is gone: GC merged the indexes and may have deleted packs they named.
      // Start over, or deduplication could trust a chunk whose pack no longer exists.
      for (const id of this.loadedPackIndexes) {
        if (!listed.has(id)) {
          this.forgetPackIndexes();
          break;
        }
      }
      const fresh = [...listed].filter((id) => !this.loadedPackIndexes.has(id));
      for (const id of fresh) {
        let records: PackRecord[];
        try {
          records = await this.readPackIndex(id, signal);
        } catch (e) {
          // GC merged and deleted it since the listing: its entries are in the merged one.
          if (isCairnError(e, "not-found")) continue;
          throw e;
        }
        this.addPackRecords(id, records);
      }
    })();
    try {
      await this.loading;
    } finally {
      this.loading = undefined;
    }
  }

  /** One pack index object's records (not-found if it is gone). */
  async readPackIndex(id: string, signal?: AbortSignal): Promise<PackRecord[]> {
    const framed = await this.store.get(packIndexKey(id), { signal });
    const what = `pack index ${id} in repository ${this.location}`;
    return decodePackIndex(await this.pool.unframe("packindex", id, framed, what), what);
  }

  /** Stores a pack index for `records`; returns its id. */
  async putPackIndex(records: readonly PackRecord[], options: PutOptions): Promise<string> {
    const h = await this.pool.hash(encodePackIndex(records));
    const f = await this.pool.frame("packindex", h.id, h.data);
    await this.store.put(packIndexKey(h.id), f.framed, options);
    return h.id;
  }

  /** Makes a pack index's entries known (after its backup sealed, or once read). First one wins. */
  addPackRecords(indexId: string, records: readonly PackRecord[]): void {
    this.loadedPackIndexes.add(indexId);
    for (const r of records) {
      for (const c of r.chunks) {
        if (!this.located.has(c.id))
          this.located.set(c.id, { pack: r.pack, offset: c.offset, length: c.length });
      }
    }
  }

  /** Forgets what was read of the pack indexes (GC rewrote them). */
  forgetPackIndexes(): void {
    this.located.clear();
    this.loadedPackIndexes.clear();
  }

  get location(): string {
    return this.store.location;
  }
  get chunkSize(): number {
    return this.config.chunkSize;
  }

  static async init(store: ObjectStore, options: InitOptions = {}): Promise<Repository> {
    const { signal } = options;
    if (await store.head(CONFIG_KEY, { signal })) {
      throw new CairnError("already-exists", `repository ${store.location} already exists`, {
        hint: "open it instead, or choose an empty location",
      });
    }
    const id = randomBytes(16).toString("hex");
    const mk =
      options.passphrase === undefined
        ? undefined
        : await createMasterKey(options.passphrase, id, {
            ...(options.scryptN ? { N: options.scryptN } : {}),
            ...(signal ? { signal } : {}),
          });
    const parsed = repositoryConfigSchema.safeParse({
      format: "cairn-repository",
      version: options.formatVersion ?? FORMAT_VERSION,
      id,
      createdAt: new Date().toISOString(),
      chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      compression: { algorithm: "zstd", level: options.compressionLevel ?? 1 },
      encryption: mk?.config ?? null,
    });
    if (!parsed.success) {
      throw new CairnError(
        "invalid-argument",
        `invalid repository settings: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
      );
    }
    const config: RepositoryConfig = mk
      ? { ...parsed.data, mac: configMac(mk.master.configKey, parsed.data) }
      : parsed.data;
    await store.put(CONFIG_KEY, Buffer.from(JSON.stringify(config, null, 2)), { signal });
    return new Repository(store, config, mk?.master.keys, mk !== undefined, options.workers);
  }

  /**
   * Opens a repository. With a passphrase (or requireEncryption) the config must be encrypted, and
   * an authenticated config must match its MAC (format §3.1): openRepositoryKeys, before anything is
   * read or written beyond the config.
   */
  static async open(store: ObjectStore, options: OpenOptions = {}): Promise<Repository> {
    const { signal } = options;
    const { config, content } = await loadRepositoryConfig(store, signal);
    const master = await openRepositoryKeys(store.location, config, content, options);
    return new Repository(
      store,
      config,
      master?.keys,
      master !== undefined && config.mac !== undefined,
      options.workers,
    );
  }

  /**
   * Authenticates a legacy encrypted repository's config (format §3.1, `cairn repo upgrade`):
   * re-wraps the same master key under "cairn/2/…" and adds the MAC, in one put of `config`. The
   * data and id keys do not change. "already-authenticated" (nothing written) when it was done.
   */
  static async upgradeConfig(
    store: ObjectStore,
    options: { passphrase: string; signal?: AbortSignal },
  ): Promise<"upgraded" | "already-authenticated"> {
    const { signal } = options;
    const { config, content } = await loadRepositoryConfig(store, signal);
    if (!config.encryption) {
      throw new CairnError(
        "failed-precondition",
        `repository ${store.location} is not encrypted: there is no key to authenticate its config with`,
        { hint: "only encrypted repositories have an authenticated config" },
      );
    }
    const master = await openRepositoryKeys(store.location, config, content, options);
    if (!master) throw new CairnError("internal", "an encrypted config gave no master key");
    if (master.wrapVersion === 2 && content["mac"] !== undefined) return "already-authenticated";
    const { mac: _legacyMac, ...rest } = content;
    const upgraded: Record<string, unknown> = {
      ...rest,
      encryption: { ...(content["encryption"] as Record<string, unknown>), wrappedKey: master.rewrap() },
    };
    upgraded["mac"] = configMac(master.configKey, upgraded);
    await store.put(CONFIG_KEY, Buffer.from(JSON.stringify(upgraded, null, 2)), { signal });
    return "upgraded";
  }

  /** Starts a backup of one VM; holds a shared lock until seal() or abort(). */
  async beginSnapshot(options: {
    vm: VmIdentity;
    signal?: AbortSignal;
    lock?: LockOptions;
  }): Promise<RestorePointWriter> {
    const lock = await acquireLock(this.store, "shared", `backup of ${options.vm.name}`, {
      ...options.lock,
      signal: options.signal,
    });
    if (this.packed) {
      // Deduplication asks what the pack indexes list (format §6a): read the ones other backups
      // sealed since. Under our shared lock no GC removes what they name.
      try {
        await this.refreshPackIndexes(options.signal);
      } catch (e) {
        await lock.release().catch(() => {});
        throw e;
      }
    }
    return new RestorePointWriter(this, options.vm, lock);
  }

  /** Sealed snapshots, oldest first. Unsealed backups do not exist here. */
  async listSnapshots(signal?: AbortSignal): Promise<SnapshotManifest[]> {
    const out: SnapshotManifest[] = [];
    for (const id of await this.listSnapshotIds(signal)) out.push(await this.showSnapshot(id, signal));
    return out;
  }

  /** Ids of the sealed snapshots, oldest first (one listing, no manifest read). */
  async listSnapshotIds(signal?: AbortSignal): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.store.list(SNAPSHOTS_PREFIX, { signal }))
      ids.push(o.key.slice(SNAPSHOTS_PREFIX.length));
    return ids.sort();
  }

  /**
   * One VM's sealed snapshots, oldest first, reading only its manifests (format §7.2): the markers
   * under vms/ say which snapshot is whose; a snapshot without one (sealed by an older Cairn, or its
   * marker swept) is read to find out.
   */
  async listVmSnapshots(uuid: string, signal?: AbortSignal): Promise<SnapshotManifest[]> {
    const mine = this.vmKey(uuid);
    const owners = new Map<string, string>();
    const [ids] = await Promise.all([
      this.listSnapshotIds(signal),
      (async () => {
        for await (const o of this.store.list(VM_SNAPSHOTS_PREFIX, { signal })) {
          const [vmKey, id] = o.key.slice(VM_SNAPSHOTS_PREFIX.length).split("/");
          if (vmKey && id) owners.set(id, vmKey);
        }
      })(),
    ]);
    const out: SnapshotManifest[] = [];
    for (const id of ids) {
      const owner = owners.get(id);
      if (owner !== undefined && owner !== mine) continue;
      const m = await this.showSnapshot(id, signal);
      if (m.vm.uuid === uuid) out.push(m);
    }
    return out;
  }

  /**
   * The folder name of a VM's markers (format §7.2): its uuid hashed — keyed like chunk ids in an
   * encrypted repository, so keys do not tell which VMs it holds.
   */
  vmKey(uuid: string): string {
    const h = this.keys ? createHmac("sha256", this.keys.idKey) : createHash("sha256");
    return h.update(`cairn/1/vm/${uuid}`).digest("hex");
  }

  /** Stores a snapshot's per-VM marker (format §7.2), staged with its chunks by a backup. */
  async putVmMarker(manifest: SnapshotManifest, options: PutOptions): Promise<void> {
    const key = vmSnapshotKey(this.vmKey(manifest.vm.uuid), manifest.id);
    await this.store.put(key, Buffer.from(manifest.id), options);
  }

  /** Deletes a snapshot's per-VM marker (prune, after its manifest). */
  async deleteVmMarker(manifest: SnapshotManifest, signal?: AbortSignal): Promise<void> {
    await this.store.delete(vmSnapshotKey(this.vmKey(manifest.vm.uuid), manifest.id), { signal });
  }

  async showSnapshot(id: string, signal?: AbortSignal): Promise<SnapshotManifest> {
    const what = `snapshot ${id} in repository ${this.location}`;
    let framed: Buffer;
    try {
      framed = await this.store.get(snapshotKey(id), { signal });
    } catch (e) {
      if (isCairnError(e, "not-found")) {
        throw new CairnError("not-found", `${what} does not exist`, {
          cause: e,
          hint: "list snapshots to see which exist",
        });
      }
      throw e;
    }
    const plain = unframe("snapshot", id, framed, this.keys, what);
    let json: unknown;
    try {
      json = JSON.parse(plain.toString("utf8"));
    } catch (e) {
      throw new CairnError("corrupt", `${what} is not valid JSON`, { cause: e });
    }
    const parsed = snapshotManifestSchema.safeParse(json);
    if (!parsed.success) throw new CairnError("corrupt", `${what} is invalid: ${parsed.error.message}`);
    return parsed.data;
  }

  /** Writes the manifest: this single atomic put is the seal (format §7). */
  async putSnapshot(manifest: SnapshotManifest, signal?: AbortSignal): Promise<void> {
    const plain = Buffer.from(JSON.stringify(manifest));
    await this.store.put(
      snapshotKey(manifest.id),
      frame("snapshot", manifest.id, plain, this.keys, this.config.compression.level),
      {
        signal,
      },
    );
  }

  async readIndex(id: string, what: string, signal?: AbortSignal): Promise<DiskIndex> {
    const framed = await this.store.get(indexKey(id), { signal }).catch((e: unknown) => {
      if (isCairnError(e, "not-found")) {
        throw new CairnError(
          "corrupt",
          `${what}: its index ${id} is missing from repository ${this.location}`,
          { cause: e },
        );
      }
      throw e;
    });
    const plain = await this.pool.unframe("index", id, framed, `index ${id} of ${what}`);
    return DiskIndex.decode(plain, `index ${id} of ${what}`);
  }

  /**
   * Reads and verifies one chunk; `what` names snapshot, disk and offset for errors. `where`: its
   * place in a pack the caller wrote and that is not sealed yet.
   */
  async readChunk(id: string, what: string, signal?: AbortSignal, where?: ChunkLocation): Promise<Buffer> {
    let at = where ?? this.located.get(id);
    if (!at && this.packed) {
      await this.refreshPackIndexes(signal);
      at = this.located.get(id);
    }
    const missing = (e: unknown, place: string): never => {
      if (isCairnError(e, "not-found")) {
        throw new CairnError(
          "corrupt",
          `${what}: chunk ${id} is missing from repository ${this.location}${place}`,
          {
            cause: e,
            hint: "run verify to see which snapshots are affected",
          },
        );
      }
      throw e;
    };
    const fromPack = (a: ChunkLocation) =>
      this.store.get(packKey(a.pack), { signal, range: { offset: a.offset, length: a.length } });
    let framed: Buffer;
    if (!at) framed = await this.store.get(chunkKey(id), { signal }).catch((e: unknown) => missing(e, ""));
    else {
      try {
        framed = await fromPack(at);
      } catch (e) {
        const gone = at.pack;
        // A GC that ran since the pack indexes were read may have repacked the chunk (format §9):
        // it replaced the indexes before it deleted the old pack, so reading them again finds it.
        if (!where && isCairnError(e, "not-found")) {
          await this.refreshPackIndexes(signal);
          at = this.located.get(id);
        }
        if (!at || at.pack === gone) return missing(e, ` (its pack ${gone} is gone)`);
        const now = at;
        framed = await fromPack(now).catch((e2: unknown) => missing(e2, ` (its pack ${now.pack} is gone)`));
      }
    }
    if (at && framed.length !== at.length) {
      throw new CairnError(
        "corrupt",
        `${what}: chunk ${id} in repository ${this.location} is cut short: pack ${at.pack} ends before its frame`,
        { hint: "run verify to see which snapshots are affected" },
      );
    }
    return this.pool.unframe("chunk", id, framed, `chunk ${id} (${what}) in repository ${this.location}`);
  }

  async openDisk(snapshotId: string, target: string, signal?: AbortSignal): Promise<RestorePointReader> {
    const manifest = await this.showSnapshot(snapshotId, signal);
    const disk = manifest.disks.find((d) => d.target === target);
    if (!disk) {
      throw new CairnError(
        "not-found",
        `snapshot ${snapshotId} in repository ${this.location} has no disk ${target}`,
        {
          hint: `its disks are: ${manifest.disks.map((d) => d.target).join(", ") || "none"}`,
        },
      );
    }
    const index = await this.readIndex(disk.index, `snapshot ${snapshotId} disk ${target}`, signal);
    return new RestorePointReader(this, manifest, disk, index);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
