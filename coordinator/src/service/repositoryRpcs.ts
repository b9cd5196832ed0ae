import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { MaintenanceReport } from "../../../shared/src/gen/cairn/v1/common.js";
import type {
  CoordinatorServiceImplementation,
  JobSummary,
  SnapshotSummary,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { repositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import { withoutConfigFileContents } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import { verifySlices } from "../maintenance/Maintenance.js";
import { reportOf, type StoredTask, storeTask } from "../maintenance/maintenanceTask.js";
import type { MaintenanceKind, ReachRecord, RepositoryRecord, SnapshotRecord } from "../store/records.js";
import { reachOf } from "../transfer/chooseTransferPath.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { jobSummary } from "./jobSummary.js";
import { principalName, principalOf } from "./principal.js";

type RepositoryRpcs = Pick<
  CoordinatorServiceImplementation,
  | "registerRepository"
  | "listRepositories"
  | "showRepository"
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

/** A location as operators write it: an absolute path or s3://bucket[/prefix] (format of openRepositoryStore). */
function checkLocation(location: string): void {
  if (!location) throw new CairnError("invalid-argument", "location is required (path or s3:// URL)");
  if (location.startsWith("s3://")) {
    let bucket = "";
    try {
      bucket = new URL(location).hostname;
    } catch {}
    if (!bucket) throw new CairnError("invalid-argument", `location ${location} names no bucket`);
  } else if (!location.startsWith("/"))
    throw new CairnError(
      "invalid-argument",
      `location ${JSON.stringify(location)} is not an absolute path or s3:// URL`,
      {
        hint: "agents open the location as given, on their own hosts: a relative path means nothing there",
      },
    );
}

const ACTION: Record<MaintenanceKind, string> = {
  verify: "VerifyRepository",
  prune: "PruneRepository",
  gc: "GcRepository",
  stats: "RepositoryStats",
  scan: "ScanRepository",
};

/**
 * Repositories and the snapshot catalog. The coordinator opens no repository: registering one
 * queues a scan, and verify, prune, GC and stats are jobs that an agent reaching it runs (format §9).
 */
export function repositoryRpcs(c: CoordinatorContext): RepositoryRpcs {
  const who = (ctx: CallContext) => principalName(principalOf(ctx));

  async function repositoryRecord(name: string): Promise<RepositoryRecord> {
    if (!name) throw new CairnError("invalid-argument", "name is required (the repository's name)");
    const r = await c.store.getRepository(name);
    if (!r)
      throw new CairnError("not-found", `repository ${name} is not registered`, {
        hint: "see `cairn repo list`",
      });
    return r;
  }

  /**
   * Queues one maintenance job (audited as the caller's action); with `wait`, answers once it has
   * ended, with its report. A job that ended without one (failed, cancelled) is an error naming why.
   */
  async function runJob(
    kind: MaintenanceKind,
    name: string,
    task: StoredTask,
    req: { host: string; wait: boolean; detail: string },
    ctx: CallContext,
  ): Promise<{ job: JobSummary; report: MaintenanceReport | undefined }> {
    const rec = await repositoryRecord(name);
    if (req.host && !(await c.store.getHost(req.host)))
      throw new CairnError("not-found", `host ${req.host} is not enrolled`, {
        hint: "see `cairn hosts list`",
      });
    const job = await c.maintenance.enqueue(kind, rec.name, task, {
      reason: `${kind} by ${who(ctx)}${req.detail ? ` (${req.detail})` : ""}`,
      trigger: "manual",
      ...(req.host ? { hostId: req.host } : {}),
    });
    await c.audit(who(ctx), ACTION[kind], rec.name, `job ${job.id}${req.detail ? ` ${req.detail}` : ""}`);
    if (!req.wait) return { job: jobSummary(job, undefined), report: undefined };
    const end = await c.maintenance.awaitEnd(job.id, ctx.signal);
    const report = reportOf(end);
    if (!report)
      throw new CairnError(
        end.state === "cancelled" ? "aborted" : "failed-precondition",
        `${kind} job ${end.id} ${end.state}: ${end.reason}`,
        { hint: `see \`cairn jobs show ${end.id}\`` },
      );
    return { job: jobSummary(end, undefined), report };
  }

  async function reachAndOnline() {
    const online = new Set((await c.store.listHosts()).filter((h) => h.status === "online").map((h) => h.id));
    return { reach: await c.store.listReach(), online };
  }

  const reportAs = <K extends NonNullable<MaintenanceReport["report"]>["$case"]>(
    r: { job: JobSummary; report: MaintenanceReport | undefined },
    kind: K,
  ) => {
    const rep = r.report?.report;
    return {
      job: r.job,
      report: rep?.$case === kind ? (rep.value as Extract<typeof rep, { $case: K }>["value"]) : undefined,
    };
  };

  return {
    async registerRepository(req, ctx) {
      if (!NAME.test(req.name))
        throw new CairnError(
          "invalid-argument",
          `name ${JSON.stringify(req.name)} must match ${NAME.source}`,
        );
      checkLocation(req.location);
      const old = await c.store.getRepository(req.name);
      const created = await c.store.putRepository({
        name: req.name,
        location: req.location,
        createdMs: old?.createdMs ?? c.now(),
        // A new location may be another repository: its id is learnt again from a probe.
        ...(old?.id && old.location === req.location ? { id: old.id } : {}),
      });
      void c.reach.probeAll();
      // An agent proves the location and brings the snapshots already there into the catalog.
      const scan = await c.maintenance.enqueue("scan", req.name, storeTask("scan", {}, req.location), {
        reason: `scan of ${req.location} on registration by ${who(ctx)}`,
        trigger: "manual",
      });
      await c.audit(who(ctx), "RegisterRepository", req.name, `${req.location} (scan job ${scan.id})`);
      return { created, scanJobId: scan.id };
    },

    async listRepositories() {
      const { reach, online } = await reachAndOnline();
      return {
        repositories: (await c.store.listRepositories()).map((r) => repositorySummary(r, reach, online)),
      };
    },

    async showRepository(req) {
      const rec = await repositoryRecord(req.name);
      const { reach, online } = await reachAndOnline();
      const hosts = [...new Set(reach.map((r) => r.hostId))].sort();
      return {
        repository: repositorySummary(rec, reach, online),
        reach: hosts
          .map((h) => reachOf(reach, h, rec))
          .filter((r): r is ReachRecord => r !== undefined)
          .map(repositoryReach.toWire),
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

    async showSnapshot(req) {
      if (!req.snapshotId) throw new CairnError("invalid-argument", "snapshot_id is required");
      const s = await c.store.getSnapshot(req.snapshotId);
      if (!s)
        throw new CairnError("not-found", `snapshot ${req.snapshotId} is not in the index`, {
          hint: "see `cairn snapshots list`",
        });
      const rec = await repositoryRecord(s.repository);
      return {
        snapshot: summary(s),
        repositoryLocation: rec.location,
        // Metadata only, also for entries indexed before the index dropped file contents.
        manifestJson: withoutConfigFileContents(s.manifestJson ?? ""),
      };
    },

    async verifyRepository(req, ctx) {
      const pct = req.readDataPercent;
      if (pct > 100) throw new CairnError("invalid-argument", `read_data_percent ${pct} is above 100`);
      const slices = req.readData ? (pct === 0 ? 1 : verifySlices(pct)) : 0;
      // A manual partial read picks its slice at random: repeated runs cover the chunks over time.
      const slice = slices > 1 ? Math.floor(Math.random() * slices) : 0;
      const task = storeTask("verify", {
        readData: req.readData,
        readDataSlice: slice,
        readDataSlices: slices,
      });
      const detail = req.readData ? `read-data${slices > 1 ? ` slice ${slice + 1}/${slices}` : ""}` : "";
      return reportAs(await runJob("verify", req.name, task, { ...req, detail }, ctx), "verify");
    },

    async pruneRepository(req, ctx) {
      // Retention is per VM, by the policy that made its newest snapshot; VMs without one keep everything.
      const rec = await repositoryRecord(req.name);
      const newest = new Map<string, SnapshotRecord>();
      for (const s of await c.store.listSnapshots({ repository: rec.name })) newest.set(s.vmUuid, s);
      const targets = [];
      for (const [vmUuid, s] of newest) {
        const prec = s.policy ? await c.store.getPolicy(s.policy) : undefined;
        const policy = prec && c.policies.get(prec);
        if (policy) targets.push({ vmUuid, retention: policy.retention });
      }
      const task = storeTask("prune", { targets, dryRun: req.dryRun });
      const detail = `${targets.length} VMs${req.dryRun ? " dry-run" : ""}`;
      return reportAs(await runJob("prune", req.name, task, { ...req, detail }, ctx), "prune");
    },

    async gcRepository(req, ctx) {
      const task = storeTask("gc", { dryRun: req.dryRun, noRepack: req.noRepack });
      const detail = [req.dryRun ? "dry-run" : "", req.noRepack ? "no-repack" : ""].filter(Boolean).join(" ");
      return reportAs(await runJob("gc", req.name, task, { ...req, detail }, ctx), "gc");
    },

    async repositoryStats(req, ctx) {
      return reportAs(
        await runJob("stats", req.name, storeTask("stats", {}), { ...req, detail: "" }, ctx),
        "stats",
      );
    },
  };
}

/** A repository with its id and how many online hosts reached it at their last probe. */
function repositorySummary(r: RepositoryRecord, reach: readonly ReachRecord[], online: ReadonlySet<string>) {
  let reachable = 0;
  for (const h of online) if (reachOf(reach, h, r)?.reachable) reachable++;
  return {
    name: r.name,
    location: r.location,
    createdMs: BigInt(r.createdMs),
    id: r.id ?? "",
    reachableHosts: reachable,
  };
}
