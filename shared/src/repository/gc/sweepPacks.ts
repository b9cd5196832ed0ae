import { CairnError } from "../../errors/CairnError.js";
import { idFromKey, PACK_INDEXES_PREFIX, PACKS_PREFIX, packIndexKey } from "../layout.js";
import { PACKS_PER_INDEX, type PackRecord } from "../packs/PackIndex.js";
import type { Repository } from "../Repository.js";

export interface PackSweepReport {
  packsDeleted: number;
  packBytesFreed: number;
  /** Unreferenced frames inside packs kept for their live chunks (no repacking yet). */
  packBytesUnreferenced: number;
  /** Packs with no live chunk kept because they are inside the grace period. */
  packsSpared: number;
  packIndexesMerged: number;
}

/**
 * GC's pack phase (format §9, version 2), under GC's exclusive lock. `marked` are the chunks sealed
 * manifests reference. Order matters for crashes: the merged pack index is durable before the
 * indexes it replaces are deleted, and those are gone before any pack they name is deleted.
 */
export async function sweepPacks(
  repo: Repository,
  marked: ReadonlySet<string>,
  cutoff: number,
  options: {
    dryRun?: boolean | undefined;
    signal?: AbortSignal | undefined;
    /** Packs per merged pack index (tests lower it). */
    packsPerIndex?: number | undefined;
  },
): Promise<PackSweepReport> {
  const { signal } = options;
  const indexIds: string[] = [];
  for await (const o of repo.store.list(PACK_INDEXES_PREFIX, { signal }))
    indexIds.push(o.key.slice(PACK_INDEXES_PREFIX.length));
  const byPack = new Map<string, Map<string, { offset: number; length: number }>>();
  for (const id of indexIds) {
    const records = await repo.readPackIndex(id, signal).catch((e: unknown) => {
      throw new CairnError(
        "failed-precondition",
        `GC stopped before deleting anything: pack index ${id} is unreadable`,
        {
          cause: e,
          hint: "run verify; a pack index that cannot be read hides which packs hold live chunks",
        },
      );
    });
    for (const r of records) {
      const m = byPack.get(r.pack) ?? new Map<string, { offset: number; length: number }>();
      byPack.set(r.pack, m);
      for (const c of r.chunks) if (!m.has(c.id)) m.set(c.id, { offset: c.offset, length: c.length });
    }
  }
  const report: PackSweepReport = {
    packsDeleted: 0,
    packBytesFreed: 0,
    packBytesUnreferenced: 0,
    packsSpared: 0,
    packIndexesMerged: 0,
  };
  const kept: PackRecord[] = [];
  const dead: Array<{ key: string; size: number }> = [];
  for await (const o of repo.store.list(PACKS_PREFIX, { signal })) {
    const pack = idFromKey(o.key);
    if (!pack) continue;
    const entries = byPack.get(pack);
    let live = false;
    let unreferenced = 0;
    for (const [id, e] of entries ?? []) {
      if (marked.has(id)) live = true;
      else unreferenced += e.length;
    }
    if (!live && o.lastModified.getTime() < cutoff) {
      dead.push(o);
      continue;
    }
    if (!live) report.packsSpared++;
    else report.packBytesUnreferenced += unreferenced;
    if (entries) {
      kept.push({
        pack,
        chunks: [...entries].map(([id, e]) => ({ id, offset: e.offset, length: e.length })),
      });
    }
  }
  // Entries naming packs that do not exist are dropped too: deduplication must not trust them.
  // The merged indexes hold PACKS_PER_INDEX packs each; more indexes than that needs (backups add
  // one or more each) are merged too, so readers load a few objects, not one per backup ever.
  const per = options.packsPerIndex ?? PACKS_PER_INDEX;
  const groups: PackRecord[][] = [];
  for (let i = 0; i < kept.length; i += per) groups.push(kept.slice(i, i + per));
  const changed = dead.length > 0 || kept.length !== byPack.size || indexIds.length > groups.length;
  if (!changed) return report;
  report.packsDeleted = dead.length;
  report.packBytesFreed = dead.reduce((n, d) => n + d.size, 0);
  report.packIndexesMerged = indexIds.length;
  if (options.dryRun) return report;
  const merged = new Set<string>();
  for (const g of groups) merged.add(await repo.putPackIndex(g, { signal }));
  for (const id of indexIds) if (!merged.has(id)) await repo.store.delete(packIndexKey(id), { signal });
  for (const d of dead) await repo.store.delete(d.key, { signal });
  repo.forgetPackIndexes();
  return report;
}
