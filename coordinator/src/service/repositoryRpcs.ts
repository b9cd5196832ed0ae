import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  CoordinatorServiceImplementation,
  SnapshotSummary,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { repositoryStats } from "../../../shared/src/repository/stats/repositoryStats.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import { snapshotRecordOf } from "../snapshots/snapshotRecordOf.js";
import type { RepositoryRecord, SnapshotRecord } from "../store/records.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { principalName, principalOf } from "./principal.js";

type RepositoryRpcs = Pick<
  CoordinatorServiceImplementation,
  | "registerRepository"
  | "listRepositories"
  | "listSnapshots"
  | "showSnapshot"
  | "verifyRepository"
  | "pruneRepository"
  | "gcRepository"
  | "repositoryStats"
>;

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

function summary(s: SnapshotRecord): SnapshotSummary {
  return {
    snapshotId: s.id,
    vmUuid: s.vmUuid,
    vmName: s.vmName,
    repository: s.repository,
    createdMs: BigInt(s.createdMs),
    logicalBytes: BigInt(s.logicalBytes),
    jobId: s.jobId ?? "",
    bytesStored: BigInt(s.bytesStored),
    kinds: Object.entries(s.kinds)
      .map(([d, k]) => `${d}=${k}`)
      .join(" "),
  };
}

/** Repositories and the snapshot index. Maintenance runs here, on the coordinator's view of the repository. */
export function repositoryRpcs(c: CoordinatorContext): RepositoryRpcs {
  const who = (ctx: CallContext) => principalName(principalOf(ctx));

  async function repositoryRecord(name: string): Promise<RepositoryRecord> {
    if (!name) throw new CairnError("invalid-argument", "name is required (the repository's name)");
    const r = await c.store.getRepository(name);
    if (!r)
      throw new CairnError("not-found", `repository ${name} is not registered`, {
        hint: "see `cairn repository list`",
      });
    return r;
  }

  async function withRepository<T>(
    name: string,
    signal: AbortSignal,
    fn: (repo: Repository) => Promise<T>,
  ): Promise<T> {
    const rec = await repositoryRecord(name);
    const repo = await c.openRepository(rec.location, signal);
    try {
      return await fn(repo);
    } finally {
      await repo.close();
    }
  }

  return {
    async registerRepository(req, ctx) {
      if (!NAME.test(req.name))
        throw new CairnError(
          "invalid-argument",
          `name ${JSON.stringify(req.name)} must match ${NAME.source}`,
        );
      if (!req.location) throw new CairnError("invalid-argument", "location is required (path or s3:// URL)");
      // Opening proves it exists and that this coordinator can read it; its snapshots join the index.
      const repo = await c.openRepository(req.location, ctx.signal);
      try {
        const snaps = await repo.listSnapshots(ctx.signal);
        const old = await c.store.getRepository(req.name);
        const created = await c.store.putRepository({
          name: req.name,
          location: req.location,
          createdMs: old?.createdMs ?? c.now(),
        });
        for (const m of snaps) await c.store.putSnapshot(snapshotRecordOf(m, req.name));
        await c.audit(
          who(ctx),
          "RegisterRepository",
          req.name,
          `${req.location} (${snaps.length} snapshots)`,
        );
        return { created };
      } finally {
        await repo.close();
      }
    },

    async listRepositories() {
      return {
        repositories: (await c.store.listRepositories()).map((r) => ({
          name: r.name,
          location: r.location,
          createdMs: BigInt(r.createdMs),
        })),
      };
    },

    async listSnapshots(req) {
      let vmUuid: string | undefined;
      if (req.vm) {
        const vm = await c.store.getVm(req.vm);
        vmUuid = vm?.uuid ?? req.vm;
      }
      if (req.repository) await repositoryRecord(req.repository);
      const snaps = await c.store.listSnapshots({
        ...(vmUuid ? { vmUuid } : {}),
        ...(req.repository ? { repository: req.repository } : {}),
      });
      return { snapshots: snaps.map(summary) };
    },

    async showSnapshot(req, ctx) {
      if (!req.snapshotId) throw new CairnError("invalid-argument", "snapshot_id is required");
      const s = await c.store.getSnapshot(req.snapshotId);
      if (!s)
        throw new CairnError("not-found", `snapshot ${req.snapshotId} is not in the index`, {
          hint: "see `cairn snapshots list`",
        });
      const rec = await repositoryRecord(s.repository);
      const manifest = await withRepository(s.repository, ctx.signal, (r) =>
        r.showSnapshot(s.id, ctx.signal),
      );
      return {
        snapshot: summary(s),
        repositoryLocation: rec.location,
        manifestJson: JSON.stringify(manifest),
      };
    },

    async verifyRepository(req, ctx) {
      const report = await withRepository(req.name, ctx.signal, (r) =>
        verifyRepository(r, { readData: req.readData, signal: ctx.signal }),
      );
      await c.audit(
        who(ctx),
        "VerifyRepository",
        req.name,
        `ok=${report.ok} problems=${report.problems.length}`,
      );
      return {
        ok: report.ok,
        snapshotsChecked: BigInt(report.snapshots),
        chunksChecked: BigInt(req.readData ? report.chunksRead : report.chunksReferenced),
        problems: report.problems.map(
          (p) => `${p.kind} ${p.snapshotId}${p.disk ? `/${p.disk}` : ""}: ${p.message}`,
        ),
      };
    },

    async pruneRepository(req, ctx) {
      // Retention is per VM, by the policy that made its newest snapshot; VMs without one keep everything.
      const snaps = await c.store.listSnapshots({ repository: (await repositoryRecord(req.name)).name });
      const newest = new Map<string, SnapshotRecord>();
      for (const s of snaps) newest.set(s.vmUuid, s);
      const removed: string[] = [];
      await withRepository(req.name, ctx.signal, async (repo) => {
        for (const [vmUuid, s] of newest) {
          const rec = s.policy ? await c.store.getPolicy(s.policy) : undefined;
          const policy = rec && c.policies.get(rec);
          if (!policy) continue;
          const d = await pruneSnapshots(repo, policy.retention, {
            vmUuid,
            dryRun: req.dryRun,
            signal: ctx.signal,
          });
          removed.push(...d.remove);
        }
      });
      if (!req.dryRun) await c.store.deleteSnapshots(removed);
      await c.audit(
        who(ctx),
        req.dryRun ? "PruneRepositoryDryRun" : "PruneRepository",
        req.name,
        removed.join(" "),
      );
      return { removedSnapshotIds: removed, kept: BigInt(snaps.length - removed.length) };
    },

    async gcRepository(req, ctx) {
      const r = await withRepository(req.name, ctx.signal, (repo) =>
        collectGarbage(repo, {
          dryRun: req.dryRun,
          ...(req.noRepack ? { repack: false } : {}),
          signal: ctx.signal,
        }),
      );
      await c.audit(
        who(ctx),
        "GcRepository",
        req.name,
        `chunks=${r.chunksDeleted} packs=${r.packsDeleted} repacked=${r.packsRepacked} bytes=${r.bytesFreed}`,
      );
      return {
        chunksDeleted: BigInt(r.chunksDeleted),
        bytesFreed: BigInt(r.bytesFreed),
        packsDeleted: BigInt(r.packsDeleted),
        packBytesUnreferenced: BigInt(r.packBytesUnreferenced),
        packsRepacked: BigInt(r.packsRepacked),
        packBytesRepacked: BigInt(r.packBytesRepacked),
      };
    },

    async repositoryStats(req, ctx) {
      const s = await withRepository(req.name, ctx.signal, (r) => repositoryStats(r, ctx.signal));
      return {
        snapshots: BigInt(s.snapshots),
        logicalBytes: BigInt(s.logicalBytes),
        uniqueBytes: BigInt(s.uniqueBytes),
        storedBytes: BigInt(s.storedBytes),
        dedupRatio: s.dedupRatio,
        compressionRatio: s.compressionRatio,
      };
    },
  };
}
