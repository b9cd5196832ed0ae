import { CHUNKS_PREFIX, chunkKey, PACK_INDEXES_PREFIX, packKey } from "../../shared/src/repository/layout.js";
import type { Repository } from "../../shared/src/repository/Repository.js";

/** Where a chunk's frame is stored: its own object (version 1) or a range of a pack (version 2). */
export async function whereStored(
  repo: Repository,
  id: string,
): Promise<{ key: string; offset: number; length: number }> {
  await repo.refreshPackIndexes();
  const at = repo.locate(id);
  if (at) return { key: packKey(at.pack), offset: at.offset, length: at.length };
  const info = await repo.store.head(chunkKey(id));
  if (!info) throw new Error(`chunk ${id} is stored nowhere`);
  return { key: chunkKey(id), offset: 0, length: info.size };
}

/** Ids of every stored chunk, loose or in packs. */
export async function storedChunkIds(repo: Repository): Promise<string[]> {
  const out: string[] = [];
  for await (const o of repo.store.list(CHUNKS_PREFIX)) out.push(o.key.slice(o.key.lastIndexOf("/") + 1));
  for await (const o of repo.store.list(PACK_INDEXES_PREFIX)) {
    for (const r of await repo.readPackIndex(o.key.slice(PACK_INDEXES_PREFIX.length)))
      for (const c of r.chunks) out.push(c.id);
  }
  return out;
}
