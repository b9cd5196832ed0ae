import { randomBytes } from "node:crypto";
import { afterEach } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { ObjectStore } from "../../../shared/src/repository/ports/ObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";

export const KiB = 1024;
export const CS = 64 * KiB;
export const vm = { uuid: "00000000-0000-0000-0000-000000000001", name: "vm1" };
export const sealOpts = { domainXml: "<domain/>", consistency: { kind: "quiesced" as const } };

/** VM-like bytes: a deterministic mix of zero, random and text 16 KiB blocks. */
export function vmDisk(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let s = seed;
  for (let off = 0; off < size; off += 16 * KiB) {
    s = (s * 1103515245 + 12345) >>> 0;
    const kind = s % 3;
    const n = Math.min(16 * KiB, size - off);
    if (kind === 1) randomBytes(n).copy(b, off);
    else if (kind === 2)
      b.write(`block ${off} the quick brown fox jumps over the lazy dog `.repeat(400), off, n);
  }
  return b;
}

export async function newRepo(
  store: ObjectStore = new MemoryObjectStore(),
  passphrase?: string,
  formatVersion?: 1 | 2,
): Promise<Repository> {
  return Repository.init(store, {
    chunkSize: CS,
    workers: 2,
    scryptN: 1024,
    ...(passphrase ? { passphrase } : {}),
    ...(formatVersion ? { formatVersion } : {}),
  });
}

/**
 * Writes `data` as a full (or incremental from parent) backup of disk vda and seals it; on failure
 * aborts it, as the agent does, and rethrows.
 */
export async function backup(repo: Repository, data: Buffer, parent?: string): Promise<SnapshotManifest> {
  const w = await repo.beginSnapshot({ vm });
  try {
    const d = await w.addDisk({
      target: "vda",
      virtualSize: data.length,
      sourceFormat: "qcow2",
      kind: parent ? "incremental" : "full",
      ...(parent ? { parent: { snapshotId: parent } } : {}),
    });
    await d.write(0, data);
    await d.finish();
    return await w.seal(sealOpts);
  } catch (e) {
    await w.abort();
    throw e;
  }
}

export { storedChunkIds, whereStored } from "../../support/storedChunks.js";

/** Closes every repository passed through the returned function after each test of the file. */
export function closesAfterEach(): (p: Promise<Repository>) => Promise<Repository> {
  const repos: Repository[] = [];
  afterEach(async () => {
    for (const r of repos.splice(0)) await r.close();
  });
  return async (p) => {
    const r = await p;
    repos.push(r);
    return r;
  };
}
