import { CairnError } from "../../errors/CairnError.js";
import { idFromKey, PACK_INDEXES_PREFIX, PACKS_PREFIX, packIndexKey } from "../layout.js";
import { PACKS_PER_INDEX, type PackRecord } from "../packs/PackIndex.js";
import type { Repository } from "../Repository.js";
import {
  choosePacksToRepack,
  DEFAULT_REPACK_POLICY,
  type PackUsage,
  type RepackPolicy,
} from "./choosePacksToRepack.js";
import { framesToCopy, repackPacks } from "./repackPacks.js";

export interface PackSweepReport {
  packsDeleted: number;
  packBytesFreed: number;
  /** Unreferenced frames inside packs kept as they are (below the repack policy's thresholds). */
  packBytesUnreferenced: number;
  /** Packs rewritten with only their live chunks (sparse or small ones, format §9). */
  packsRepacked: number;
  /** Live bytes those packs' chunks took, copied into new packs. */
  packBytesRepacked: number;
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
    /** When packs with live chunks are rewritten; false: never (only dead packs are deleted). */
    repack?: RepackPolicy | false | undefined;
    /** Size of the packs a repack writes (tests lower it). */
    packTargetBytes?: number | undefined;
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
    packsRepacked: 0,
    packBytesRepacked: 0,
    packIndexesMerged: 0,
  };
  const dead: Array<{ key: string; size: number }> = [];
  /** Packs kept so far, with what the repack rule, the report and the merged indexes need of them. */
  const usage: Array<PackUsage & { key: string; unreferenced: number; record: PackRecord }> = [];
  for await (const o of repo.store.list(PACKS_PREFIX, { signal })) {
    const pack = idFromKey(o.key);
    if (!pack) continue;
    const entries = byPack.get(pack);
    let liveBytes = 0;
    let unreferenced = 0;
    for (const [id, e] of entries ?? []) {
      if (marked.has(id)) liveBytes += e.length;
      else unreferenced += e.length;
    }
    const old = o.lastModified.getTime() < cutoff;
    if (liveBytes === 0 && old) {
      dead.push(o);
      continue;
    }
    if (liveBytes === 0) report.packsSpared++;
    if (entries) {
      usage.push({
        pack,
        key: o.key,
        size: o.size,
        liveBytes,
        old,
        unreferenced: liveBytes > 0 ? unreferenced : 0,
        record: { pack, chunks: [...entries].map(([id, e]) => ({ id, offset: e.offset, length: e.length })) },
      });
    }
  }
  const repack =
    options.repack === false
      ? new Set<string>()
      : choosePacksToRepack(usage, options.repack ?? DEFAULT_REPACK_POLICY);
  for (const u of usage) if (!repack.has(u.pack)) report.packBytesUnreferenced += u.unreferenced;
  const rewritten = usage.filter((u) => repack.has(u.pack));
  const kept = usage.filter((u) => !repack.has(u.pack)).map((u) => u.record);
  if (repack.size > 0) {
    report.packsRepacked = rewritten.length;
    // Live chunks also stored in a pack kept as it is need no copy.
    const elsewhere = new Set<string>();
    for (const r of kept) for (const c of r.chunks) if (marked.has(c.id)) elsewhere.add(c.id);
    const frames = framesToCopy(
      rewritten.map((u) => u.record),
      marked,
      elsewhere,
    );
    if (options.dryRun) {
      for (const p of frames) for (const c of p.chunks) report.packBytesRepacked += c.length;
    } else {
      const out = await repackPacks(repo, frames, signal, options.packTargetBytes);
      report.packBytesRepacked = out.bytesCopied;
      kept.push(...out.records);
    }
  }
  // Entries naming packs that do not exist are dropped too: deduplication must not trust them.
  // The merged indexes hold PACKS_PER_INDEX packs each; more indexes than that needs (backups add
  // one or more each) are merged too, so readers load a few objects, not one per backup ever.
  const per = options.packsPerIndex ?? PACKS_PER_INDEX;
  const groups: PackRecord[][] = [];
  for (let i = 0; i < kept.length; i += per) groups.push(kept.slice(i, i + per));
  const changed =
    dead.length > 0 || repack.size > 0 || kept.length !== byPack.size || indexIds.length > groups.length;
  if (!changed) return report;
  report.packsDeleted = dead.length;
  report.packBytesFreed =
    dead.reduce((n, d) => n + d.size, 0) +
    rewritten.reduce((n, d) => n + d.size, 0) -
    report.packBytesRepacked;
  report.packIndexesMerged = indexIds.length;
  if (options.dryRun) return report;
  const merged = new Set<string>();
  for (const g of groups) merged.add(await repo.putPackIndex(g, { signal }));
  for (const id of indexIds) if (!merged.has(id)) await repo.store.delete(packIndexKey(id), { signal });
  // The merged indexes no longer name the rewritten packs: they go like dead ones.
  for (const d of [...dead, ...rewritten]) await repo.store.delete(d.key, { signal });
  repo.forgetPackIndexes();
  return report;
}
