import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import type { ObjectStore, PutOptions } from "../../../shared/src/repository/ports/ObjectStore.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { LooseChunkSink } from "../../../shared/src/repository/sinks/LooseChunkSink.js";
import { PackChunkSink } from "../../../shared/src/repository/sinks/PackChunkSink.js";
import { type ChunkSinkFixture, chunkSinkContract } from "../../support/chunkSinkContract.js";
import { newRepo } from "./helpers.js";

/** Chunk and pack puts fail; the repository's other objects are stored. */
class FailingDataStore extends MemoryObjectStore {
  override async put(key: string, data: Uint8Array, options?: PutOptions): Promise<void> {
    if (key.startsWith("chunks/") || key.startsWith("packs/"))
      throw new CairnError("unavailable", `injected failure putting ${key}`);
    return super.put(key, data, options);
  }
}

const repos: Repository[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const r of repos) await r.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function local(): Promise<ObjectStore> {
  const d = await mkdtemp(join(tmpdir(), "cairn-sink-"));
  dirs.push(d);
  return new LocalObjectStore(d);
}

function fixture(version: 1 | 2, store: () => Promise<ObjectStore>) {
  return async (): Promise<ChunkSinkFixture> => {
    const s = await store();
    const repo = await newRepo(s, undefined, version);
    repos.push(repo);
    return {
      store: s,
      repo,
      sink: (owner) =>
        version === 1
          ? new LooseChunkSink(s, owner)
          : new PackChunkSink(repo, owner, { targetBytes: 50_000 }),
    };
  };
}

const failing = (version: 1 | 2) => fixture(version, async () => new FailingDataStore());
chunkSinkContract(
  "LooseChunkSink on memory",
  fixture(1, async () => new MemoryObjectStore()),
  failing(1),
);
chunkSinkContract(
  "PackChunkSink on memory",
  fixture(2, async () => new MemoryObjectStore()),
  failing(2),
);
chunkSinkContract("LooseChunkSink on a local directory", fixture(1, local), failing(1));
chunkSinkContract("PackChunkSink on a local directory", fixture(2, local), failing(2));
