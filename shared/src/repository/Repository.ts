import { randomBytes } from "node:crypto";
import { CairnError, isCairnError } from "../errors/CairnError.js";
import { ChunkWorkerPool } from "./chunks/ChunkWorkerPool.js";
import { frame, unframe } from "./chunks/codec.js";
import { createMasterKey, openMasterKey } from "./crypto/masterKey.js";
import type { RepositoryKeys } from "./crypto/RepositoryKeys.js";
import { DiskIndex } from "./index/DiskIndex.js";
import { CONFIG_KEY, chunkKey, indexKey, SNAPSHOTS_PREFIX, snapshotKey } from "./layout.js";
import { acquireLock, type LockOptions } from "./locks/RepositoryLock.js";
import { type SnapshotManifest, snapshotManifestSchema } from "./manifest/SnapshotManifest.js";
import type { ObjectStore } from "./ports/ObjectStore.js";
import {
  DEFAULT_CHUNK_SIZE,
  FORMAT_VERSION,
  type RepositoryConfig,
  repositoryConfigSchema,
} from "./RepositoryConfig.js";
import { RestorePointReader } from "./RestorePointReader.js";
import { RestorePointWriter, type VmIdentity } from "./RestorePointWriter.js";

export interface InitOptions {
  chunkSize?: number;
  compressionLevel?: number;
  /** Set to encrypt the repository. There is no default passphrase. */
  passphrase?: string;
  /** scrypt cost (tests lower it); default 2^15. */
  scryptN?: number;
  workers?: number;
  signal?: AbortSignal;
}

export interface OpenOptions {
  passphrase?: string;
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
  readonly pool: ChunkWorkerPool;

  private constructor(
    store: ObjectStore,
    config: RepositoryConfig,
    keys: RepositoryKeys | undefined,
    workers?: number,
  ) {
    this.store = store;
    this.config = config;
    this.keys = keys;
    this.pool = new ChunkWorkerPool(keys, config.compression.level, workers);
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
    let keys: RepositoryKeys | undefined;
    let encryption: RepositoryConfig["encryption"] = null;
    if (options.passphrase !== undefined) {
      const mk = await createMasterKey(options.passphrase, id, {
        ...(options.scryptN ? { N: options.scryptN } : {}),
        ...(signal ? { signal } : {}),
      });
      keys = mk.keys;
      encryption = mk.config;
    }
    const parsed = repositoryConfigSchema.safeParse({
      format: "cairn-repository",
      version: FORMAT_VERSION,
      id,
      createdAt: new Date().toISOString(),
      chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      compression: { algorithm: "zstd", level: options.compressionLevel ?? 1 },
      encryption,
    });
    if (!parsed.success) {
      throw new CairnError(
        "invalid-argument",
        `invalid repository settings: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
      );
    }
    await store.put(CONFIG_KEY, Buffer.from(JSON.stringify(parsed.data, null, 2)), { signal });
    return new Repository(store, parsed.data, keys, options.workers);
  }

  static async open(store: ObjectStore, options: OpenOptions = {}): Promise<Repository> {
    const { signal } = options;
    let raw: Buffer;
    try {
      raw = await store.get(CONFIG_KEY, { signal });
    } catch (e) {
      if (isCairnError(e, "not-found")) {
        throw new CairnError("not-found", `no Cairn repository at ${store.location}`, {
          cause: e,
          hint: "check the repository location, or create one with init",
        });
      }
      throw e;
    }
    let json: unknown;
    try {
      json = JSON.parse(raw.toString("utf8"));
    } catch (e) {
      throw new CairnError("corrupt", `the config of repository ${store.location} is not valid JSON`, {
        cause: e,
      });
    }
    const version = (json as { version?: unknown } | null)?.version;
    if (typeof version === "number" && version > FORMAT_VERSION) {
      throw new CairnError(
        "failed-precondition",
        `repository ${store.location} has format version ${version}; this Cairn understands up to ${FORMAT_VERSION}`,
        { hint: "upgrade Cairn to open this repository" },
      );
    }
    const parsed = repositoryConfigSchema.safeParse(json);
    if (!parsed.success) {
      throw new CairnError(
        "corrupt",
        `the config of repository ${store.location} is invalid: ${parsed.error.message}`,
      );
    }
    const config = parsed.data;
    const keys = config.encryption
      ? await openMasterKey(options.passphrase, config.id, config.encryption, store.location, signal)
      : undefined;
    return new Repository(store, config, keys, options.workers);
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
    return new RestorePointWriter(this, options.vm, lock);
  }

  /** Sealed snapshots, oldest first. Unsealed backups do not exist here. */
  async listSnapshots(signal?: AbortSignal): Promise<SnapshotManifest[]> {
    const ids: string[] = [];
    for await (const o of this.store.list(SNAPSHOTS_PREFIX, { signal }))
      ids.push(o.key.slice(SNAPSHOTS_PREFIX.length));
    ids.sort();
    const out: SnapshotManifest[] = [];
    for (const id of ids) out.push(await this.showSnapshot(id, signal));
    return out;
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

  /** Reads and verifies one chunk; `what` names snapshot, disk and offset for errors. */
  async readChunk(id: string, what: string, signal?: AbortSignal): Promise<Buffer> {
    const framed = await this.store.get(chunkKey(id), { signal }).catch((e: unknown) => {
      if (isCairnError(e, "not-found")) {
        throw new CairnError("corrupt", `${what}: chunk ${id} is missing from repository ${this.location}`, {
          cause: e,
          hint: "run verify to see which snapshots are affected",
        });
      }
      throw e;
    });
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
