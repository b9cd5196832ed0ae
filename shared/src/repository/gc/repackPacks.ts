import { CairnError, isCairnError } from "../../errors/CairnError.js";
import { packKey } from "../layout.js";
import type { PackRecord } from "../packs/PackIndex.js";
import { newPackId, PACK_TARGET_BYTES } from "../packs/PackWriter.js";
import { putParts } from "../ports/ObjectStore.js";
import type { Repository } from "../Repository.js";

export interface RepackResult {
  /** The new packs, each listing only the live chunks copied into it. */
  records: PackRecord[];
  /** Bytes of frames copied. */
  bytesCopied: number;
}

type PackEntries = ReadonlyArray<{
  pack: string;
  chunks: ReadonlyArray<{ id: string; offset: number; length: number }>;
}>;

/**
 * The frames a repack of `packs` copies, per pack: each live chunk once, none of those in `skip`
 * (live chunks stored in a pack that is kept as it is: a duplicate from two backups that wrote it
 * at once). Pure: a dry run sums these, repackPacks copies them.
 */
export function framesToCopy(
  packs: PackEntries,
  live: ReadonlySet<string>,
  skip: ReadonlySet<string>,
): PackEntries {
  const taken = new Set<string>(skip);
  const out: Array<PackEntries[number]> = [];
  for (const p of packs) {
    const chunks = p.chunks.filter((c) => live.has(c.id) && !taken.has(c.id));
    for (const c of chunks) taken.add(c.id);
    if (chunks.length > 0) out.push({ pack: p.pack, chunks });
  }
  return out;
}

/**
 * Copies the frames chosen by framesToCopy into new packs (format §9), as durable plain puts: the
 * caller lists the new packs in a pack index before it deletes the old ones. Each frame is checked
 * (GCM tag, chunk id) before it is copied, so a repack never carries damage into a new pack; a
 * damaged frame stops GC before anything is deleted.
 */
export async function repackPacks(
  repo: Repository,
  frames: PackEntries,
  signal: AbortSignal | undefined,
  targetBytes = PACK_TARGET_BYTES,
): Promise<RepackResult> {
  const records: PackRecord[] = [];
  let parts: Buffer[] = [];
  let record: PackRecord = { pack: newPackId(), chunks: [] };
  let bytes = 0;
  let bytesCopied = 0;
  const flush = async () => {
    if (parts.length === 0) return;
    await putParts(repo.store, packKey(record.pack), parts, { signal });
    records.push(record);
    parts = [];
    record = { pack: newPackId(), chunks: [] };
    bytes = 0;
  };
  for (const p of frames) {
    const what = `pack ${p.pack} in repository ${repo.location}`;
    const data = await repo.store.get(packKey(p.pack), { signal }).catch((e: unknown) => {
      throw new CairnError(
        "failed-precondition",
        `GC stopped before deleting anything: ${what} is unreadable`,
        {
          cause: e,
          hint: "run verify to see which snapshots are affected",
        },
      );
    });
    for (const c of p.chunks) {
      const frame = data.subarray(c.offset, c.offset + c.length);
      try {
        if (frame.length !== c.length) throw new CairnError("corrupt", `${what} ends before chunk ${c.id}`);
        // A copy: the pool takes (transfers) the buffer it is given, and `frame` goes into the new pack.
        await repo.pool.unframe("chunk", c.id, new Uint8Array(frame), `chunk ${c.id} in ${what}`);
      } catch (e) {
        if (isCairnError(e, "aborted")) throw e;
        throw new CairnError(
          "failed-precondition",
          `GC stopped before deleting anything: chunk ${c.id} in ${what} is damaged`,
          { cause: e, hint: "run verify --read-data to see which snapshots are affected" },
        );
      }
      record.chunks.push({ id: c.id, offset: bytes, length: c.length });
      parts.push(frame);
      bytes += c.length;
      bytesCopied += c.length;
      if (bytes >= targetBytes) await flush();
    }
  }
  await flush();
  return { records, bytesCopied };
}
