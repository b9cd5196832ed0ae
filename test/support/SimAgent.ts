import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ServerCredentials } from "@grpc/grpc-js";
import { createServer, type Server } from "nice-grpc";
import { type CallContext, ServerError, Status } from "nice-grpc-common";
import { CoordinatorLink } from "../../agent/src/coordinator/CoordinatorLink.js";
import { CoordinatorPin } from "../../agent/src/coordinator/CoordinatorPin.js";
import { enrollAgent } from "../../agent/src/coordinator/enrollAgent.js";
import type { DomainInfo } from "../../agent/src/hypervisor/DomainInfo.js";
import { JobFeed } from "../../agent/src/jobs/JobFeed.js";
import { JobRegistry } from "../../agent/src/jobs/JobRegistry.js";
import { jobStreamsOf } from "../../agent/src/jobs/JobStreams.js";
import { runMaintenanceRpc } from "../../agent/src/server/runMaintenanceRpc.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import {
  AgentServiceDefinition,
  type AgentServiceImplementation,
  BackupJobState,
  type CheckpointRecord,
  type ExportReady,
  type LiveBitmapInfo,
  type ReadExportResponse,
  type RestoreDiskRequest,
  type RestoreDiskResponse,
  type RestoreVmRequest,
  type RestoreVmResponse,
  type RunBackupResponse,
} from "../../shared/src/gen/cairn/v1/agent.js";
import type { Progress } from "../../shared/src/gen/cairn/v1/common.js";
import { toGrpcStatus } from "../../shared/src/grpc/toGrpcStatus.js";
import { type BackupMode, backupMode } from "../../shared/src/grpc/wire/backupMode.js";
import { domainState } from "../../shared/src/grpc/wire/domainState.js";
import type { AgentRole } from "../../shared/src/grpc/wire/hostInventory.js";
import { type RepositoryReach, repositoryReach } from "../../shared/src/grpc/wire/repositoryReach.js";
import { withUnimplemented } from "../../shared/src/grpc/withUnimplemented.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { readIdentity } from "../../shared/src/pki/writeIdentity.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import {
  jobIdOf,
  type SnapshotManifest,
  snapshotManifestSchema,
} from "../../shared/src/repository/manifest/SnapshotManifest.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { FakeHypervisor } from "./fakes/FakeHypervisor.js";

export interface SimBehaviour {
  /** How long a backup takes. */
  durationMs: number;
  /** A migration holds these domains: backups of them answer `deferred`. */
  migrating?: Set<string>;
  /** Redefined checkpoints of these domains find no bitmap in QEMU (storage copied without them). */
  bitmapsLost?: Set<string>;
  /** Fail the given attempt (1-based, per job id; backups and restores) with this gRPC status. */
  failAttempt?: (jobId: string, attempt: number) => { code: Status; message: string } | undefined;
  /** The agent's roles (docs/transfer-paths.md §1); default hypervisor. */
  roles?: AgentRole[];
  /** A mover appliance's hypervisor host. */
  applianceOf?: string;
  /**
   * What a probe of a repository finds; undefined (or no function): it opens the location and
   * reports the id, reachable at `writeMiBs`. Fields returned override that (`unreachable()`).
   */
  reach?: (target: { name: string; location: string }) => Partial<RepositoryReach> | undefined;
  /** Write speed a probe reports (MiB/s). */
  writeMiBs?: number;
  /** How long a mover's ReadExport takes (default durationMs). */
  readMs?: number;
  /** How long a restore takes (default durationMs). */
  restoreMs?: number;
}

/** A probe that opened nothing (SimBehaviour.reach). */
export const unreachable = (error = "ENOENT: no such file or directory"): Partial<RepositoryReach> => ({
  repositoryId: "",
  reachable: false,
  error,
  writeMiBs: 0,
  readMiBs: 0,
});

/**
 * A simulated agent for coordinator tests without VMs: the real enrollment, the real
 * CoordinatorLink (register, heartbeat, events) and mutual TLS, with a RunBackup that follows the
 * agent's contract (idempotent by job id, re-attach, detach on disconnect) and seals a real,
 * small snapshot into a real local repository. Counts how often each job id really ran.
 */
export class SimAgent {
  readonly hypervisor: FakeHypervisor;
  readonly jobs = new JobRegistry();
  /** Job id → number of times a backup actually ran for it. */
  readonly runs = new Map<string, number>();
  private readonly feeds = new Map<string, JobFeed<RunBackupResponse>>();
  private readonly readFeeds = new Map<string, JobFeed<ReadExportResponse>>();
  /** Network path, VM host side: exports waiting for FinishExport, by job id. */
  private readonly exports = new Map<string, (f: { manifestJson: string; reason: string }) => void>();
  /** FinishExport calls received, in order (found or not). */
  readonly finishes: { jobId: string; manifestJson: string; reason: string; found: boolean }[] = [];
  /** Mover side: job id → number of times a ReadExport really ran for it. */
  readonly reads = new Map<string, number>();
  /** RunBackup requests received (the transfer spec included), in order. */
  readonly backupRequests: Parameters<AgentServiceImplementation["runBackup"]>[0][] = [];
  /** How many probes this agent answered. */
  probes = 0;
  /** RestoreDisk / RestoreVm requests received (re-attaches included), in order. */
  readonly restoreRequests: (
    | { kind: "disk"; request: RestoreDiskRequest }
    | { kind: "vm"; request: RestoreVmRequest }
  )[] = [];
  /** Job id → number of times a restore really ran for it. */
  readonly restoreRuns = new Map<string, number>();
  /** What restores "wrote" on this host: destination path (or domain name) → snapshot id. */
  readonly restored = new Map<string, string>();
  /**
   * What libvirt and QEMU hold per domain on this host, as the real agent reports it: checkpoint
   * metadata (oldest first) and the running QEMU's bitmaps per disk.
   */
  readonly chains = new Map<string, { checkpoints: CheckpointRecord[]; bitmaps: LiveBitmapInfo[] }>();
  private readonly dir = mkdtempSync(join(tmpdir(), "cairn-sim-"));
  private server: Server | undefined;
  private link: CoordinatorLink | undefined;
  port = 0;

  constructor(
    readonly hostId: string,
    domains: DomainInfo[],
    public behaviour: SimBehaviour = { durationMs: 100 },
  ) {
    this.hypervisor = new FakeHypervisor(domains);
  }

  get identityDir(): string {
    return join(this.dir, "identity");
  }

  async enroll(coordinator: string, token: string, caFile: string): Promise<void> {
    await enrollAgent(
      { coordinator, token, caFile, identityDir: this.identityDir, hostname: this.hostId },
      AbortSignal.timeout(30_000),
    );
  }

  /** Serves AgentService over mTLS and starts the coordinator link. */
  async start(coordinator: string, opts: { pollMs?: number; port?: number } = {}): Promise<void> {
    const identity = await readIdentity(this.identityDir);
    if (!identity) throw new Error("enroll first");
    const server = createServer();
    server.add(AgentServiceDefinition, withUnimplemented(AgentServiceDefinition, this.service(), "sim"));
    this.port = await server.listen(
      `127.0.0.1:${opts.port ?? 0}`,
      ServerCredentials.createSsl(
        Buffer.from(identity.caPem),
        [{ cert_chain: Buffer.from(identity.certPem), private_key: Buffer.from(identity.keyPem) }],
        true,
      ),
    );
    this.server = server;
    this.link = new CoordinatorLink(
      {
        address: coordinator,
        advertiseAddress: `127.0.0.1:${this.port}`,
        hostId: this.hostId,
        identity,
        pin: new CoordinatorPin(this.identityDir, identity.coordinatorPem),
        pollMs: opts.pollMs ?? 200,
      },
      {
        hypervisor: this.hypervisor,
        jobs: this.jobs,
        log: createLogger("sim", "silent"),
        inventory: async () => ({
          hostId: this.hostId,
          hostname: this.hostId,
          os: "sim",
          kernel: "sim",
          cpuCount: 2,
          memoryBytes: 1n << 30n,
          libvirtVersion: "9.0.0",
          qemuVersion: "7.2.0",
          agentVersion: "sim",
          libvirtUri: "test:///sim",
          roles: this.behaviour.roles ?? ["hypervisor"],
          repositories: [],
          transferAddress: "127.0.0.1",
          applianceOf: this.behaviour.applianceOf ?? "",
        }),
      },
    );
    this.link.start();
    await this.link.registered;
  }

  /** Like kill -9: the server and link vanish, running jobs die without a result. */
  async kill(): Promise<void> {
    await this.link?.stop();
    this.server?.forceShutdown();
    await this.jobs.abortAll("killed", 1000);
    this.feeds.clear();
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * A live migration of `uuid` from this host to `to`, shared storage: the domain moves, its
   * bitmaps travel inside the images (unless `bitmaps` is false), its checkpoint metadata does not.
   */
  migrateTo(to: SimAgent, uuid: string, opts: { bitmaps?: boolean } = {}): void {
    const i = this.hypervisor.domains.findIndex((d) => d.uuid === uuid);
    if (i < 0) throw new Error(`no domain ${uuid} on ${this.hostId}`);
    const [d] = this.hypervisor.domains.splice(i, 1);
    to.hypervisor.domains.push(d as DomainInfo);
    const chain = this.chains.get(uuid);
    this.chains.delete(uuid);
    to.chains.set(uuid, { checkpoints: [], bitmaps: opts.bitmaps === false ? [] : (chain?.bitmaps ?? []) });
  }

  private chainOf(uuid: string) {
    let c = this.chains.get(uuid);
    if (!c) {
      c = { checkpoints: [], bitmaps: [] };
      this.chains.set(uuid, c);
    }
    return c;
  }

  private service(): Partial<AgentServiceImplementation> {
    return {
      listDomains: async () => ({ domains: [] }),
      describeChain: async (req) => {
        const d = this.hypervisor.domains.find((x) => x.uuid === req.domainUuid);
        if (!d)
          return {
            found: false,
            domainName: "",
            state: 0,
            persistent: false,
            checkpoints: [],
            bitmaps: [],
            activeJob: "",
          };
        const c = this.chainOf(d.uuid);
        return {
          found: true,
          domainName: d.name,
          state: domainState.toWire(d.state),
          persistent: d.persistent,
          checkpoints: c.checkpoints,
          bitmaps: c.bitmaps,
          activeJob: this.behaviour.migrating?.has(d.uuid) ? "migration" : "",
        };
      },
      redefineCheckpoints: async (req) => {
        const started = performance.now();
        const c = this.chainOf(req.domainUuid);
        const redefined: string[] = [];
        const verdicts = [];
        for (const cp of req.checkpoints) {
          if (!/^<domaincheckpoint>/.test(cp.xml))
            throw new ServerError(Status.INVALID_ARGUMENT, `bad XML for ${cp.name}`);
          c.checkpoints.push(cp);
          redefined.push(cp.name);
          if (this.behaviour.bitmapsLost?.has(req.domainUuid))
            c.bitmaps = c.bitmaps.filter((b) => b.name !== cp.name);
          for (const [target, bitmap] of Object.entries(cp.bitmaps)) {
            const kept = c.bitmaps.some((b) => b.target === target && b.name === bitmap && !b.inconsistent);
            verdicts.push({
              checkpoint: cp.name,
              target,
              kept,
              reason: kept
                ? ""
                : `bitmap ${bitmap} of ${target} is missing in the running QEMU: storage copied without bitmaps`,
            });
          }
        }
        return { redefined, alreadyPresent: [], verdicts, elapsedMs: performance.now() - started };
      },
      forgetCheckpoints: async (req) => {
        const d = this.hypervisor.domains.find((x) => x.uuid === req.domainUuid);
        if (d?.state === "running") return { removed: [], refused: `${d.name} runs on ${this.hostId}` };
        const c = this.chains.get(req.domainUuid);
        const removed =
          c?.checkpoints.map((x) => x.name).filter((n) => !req.names.length || req.names.includes(n)) ?? [];
        if (c) c.checkpoints = c.checkpoints.filter((x) => !removed.includes(x.name));
        return { removed, refused: "" };
      },
      abortJob: async (req) => ({
        found: (await this.jobs.abortAndWait(req.jobId, req.reason, 8_000)).found,
      }),
      runBackup: (req, ctx) => this.runBackup(req, ctx),
      restoreDisk: (req, ctx) => asServerErrors(this.restoreDisk(req, ctx)),
      restoreVm: (req, ctx) => asServerErrors(this.restoreVm(req, ctx)),
      readExport: (req, ctx) => this.readExport(req, ctx),
      finishExport: async (req) => {
        const waiter = this.exports.get(req.jobId);
        this.finishes.push({ ...req, found: Boolean(waiter) });
        waiter?.({ manifestJson: req.manifestJson, reason: req.reason });
        return { found: Boolean(waiter) };
      },
      probeRepositories: async (req) => {
        this.probes++;
        const reach = await Promise.all(req.targets.map((t) => this.probe(t)));
        return { reach: reach.map(repositoryReach.toWire) };
      },
      // The agent's own maintenance RPC, on a real repository: only backups are simulated.
      runMaintenance: (req, ctx) =>
        asServerErrors(
          runMaintenanceRpc(
            {
              jobs: this.jobs,
              openRepository: (location) => Repository.open(new LocalObjectStore(location)),
              exclusiveLockWaitMs: 30_000,
            },
            req,
            ctx,
          ),
        ),
    };
  }

  /** What the real agent's planDisks decides for the sim's one disk, and the checkpoint it makes. */
  private plan(
    chain: { checkpoints: CheckpointRecord[]; bitmaps: LiveBitmapInfo[] },
    mode: BackupMode,
    jobId: string,
  ): { kind: string; checkpoint?: CheckpointRecord } {
    const name = `cairn-${jobId.replace(/[^A-Za-z0-9-]/g, "").slice(0, 40)}`;
    const last = chain.checkpoints.at(-1);
    const checkpoint: CheckpointRecord | undefined =
      mode === "copy"
        ? undefined
        : {
            name,
            parent: last?.name ?? "",
            bitmaps: { vda: name },
            xml: `<domaincheckpoint><name>${name}</name>${last ? `<parent><name>${last.name}</name></parent>` : ""}<disks><disk name='vda' checkpoint='bitmap' bitmap='${name}'/></disks></domaincheckpoint>`,
            createdMs: BigInt(Date.now()),
          };
    const base = { ...(checkpoint ? { checkpoint } : {}) };
    if (mode === "copy") return { kind: "copy" };
    if (mode === "full") return { ...base, kind: "full: full backup requested" };
    if (!last) return { ...base, kind: "full: no earlier backup of this VM in the repository" };
    const b = chain.bitmaps.find((x) => x.name === last.name);
    if (!b) return { ...base, kind: `full: dirty bitmap ${last.name} of vda is missing` };
    if (b.inconsistent) return { ...base, kind: `full: dirty bitmap ${last.name} of vda is inconsistent` };
    return { ...base, kind: mode === "differential" ? "differential" : "incremental" };
  }

  /** Opens the location as the agent's probe does (no probe object: the sim's repos are local). */
  private async probe(t: { name: string; location: string }): Promise<RepositoryReach> {
    const base: RepositoryReach = {
      repositoryId: "",
      name: t.name,
      location: t.location,
      reachable: false,
      error: "",
      writeMiBs: 0,
      readMiBs: 0,
      probedMs: Date.now(),
      hostId: "",
    };
    const over = this.behaviour.reach?.(t);
    if (over?.reachable === false) return { ...base, ...over };
    try {
      const r = await Repository.open(new LocalObjectStore(t.location));
      const id = r.config.id;
      await r.close();
      const speed = this.behaviour.writeMiBs ?? 100;
      return { ...base, repositoryId: id, reachable: true, writeMiBs: speed, readMiBs: speed, ...over };
    } catch (e) {
      return { ...base, error: (e as Error).message, ...over };
    }
  }

  private async *runBackup(req: Parameters<AgentServiceImplementation["runBackup"]>[0], ctx: CallContext) {
    this.backupRequests.push(req);
    // The network path's VM host opens no repository (`repository` empty): nothing to look up.
    if (req.repository) {
      const repo = await Repository.open(new LocalObjectStore(req.repository));
      try {
        const done = (await repo.listVmSnapshots(req.domainUuid)).find((s) => jobIdOf(s) === req.jobId);
        if (done) {
          yield result(
            req.jobId,
            done,
            done.disks.map((d) => [d.target, d.kind] as [string, string]),
          );
          return;
        }
      } finally {
        await repo.close();
      }
    }
    let feed = this.feeds.get(req.jobId);
    if (!feed) {
      const f = new JobFeed<RunBackupResponse>();
      feed = f;
      const attempt = (this.runs.get(req.jobId) ?? 0) + 1;
      this.runs.set(req.jobId, attempt);
      const vm = this.hypervisor.domains.find((d) => d.uuid === req.domainUuid);
      const mode = backupMode.fromWire(req.mode, "mode");
      if (!vm || this.behaviour.migrating?.has(req.domainUuid)) {
        // As the agent: nothing was changed; the coordinator runs it where the VM is.
        yield {
          jobId: req.jobId,
          event: {
            $case: "deferred" as const,
            value: vm
              ? { cause: "migrating", reason: `a migration of ${vm.name} holds the domain` }
              : { cause: "moved", reason: `domain ${req.domainUuid} is not on ${this.hostId}` },
          },
        };
        return;
      }
      const chain = this.chainOf(vm.uuid);
      const plan = this.plan(chain, mode, req.jobId);
      const job = this.jobs.start(req.jobId, req.domainUuid, async (signal) => {
        if (plan.checkpoint)
          f.publish("checkpoint", {
            jobId: req.jobId,
            event: { $case: "checkpointPending", value: { ...plan.checkpoint, xml: "" } },
          });
        f.publish("state", {
          jobId: req.jobId,
          event: { $case: "jobState", value: BackupJobState.BACKUP_JOB_STATE_READING },
        });
        if (req.transfer) {
          // Network path: export, hand it over, and wait for the reader's verdict (FinishExport);
          // the export is held under the same key so a re-attaching caller sees it again.
          const verdict = new Promise<{ manifestJson: string; reason: string }>((resolve, reject) => {
            this.exports.set(req.jobId, resolve);
            signal.addEventListener("abort", () => reject(signal.reason), { once: true });
          }).finally(() => this.exports.delete(req.jobId));
          f.publish("export", {
            jobId: req.jobId,
            event: { $case: "exportReady", value: exportReadyOf(vm, req.jobId, plan, mode) },
          });
          const v = await verdict;
          if (!v.manifestJson) throw new ServerError(Status.ABORTED, `export ended unsealed: ${v.reason}`);
          return snapshotManifestSchema.parse(JSON.parse(v.manifestJson));
        }
        const steps = 5;
        for (let i = 1; i <= steps; i++) {
          await sleep(this.behaviour.durationMs / steps, undefined, { signal });
          f.publish("progress", {
            jobId: req.jobId,
            event: {
              $case: "progress",
              value: {
                bytesDone: BigInt(i << 20),
                bytesTotal: BigInt(steps << 20),
                rate: 1e6,
                etaSeconds: 1,
                phase: "read",
              },
            },
          });
        }
        const fail = this.behaviour.failAttempt?.(req.jobId, attempt);
        if (fail) throw new ServerError(fail.code, fail.message);
        return sealSimSnapshot(
          req.repository,
          { uuid: vm.uuid, name: vm.name },
          attempt,
          "<domain/>",
          req,
          signal,
        );
      });
      this.feeds.set(req.jobId, f);
      job
        .then(
          (m) => {
            // Sealed: the checkpoint is libvirt's now; older ones but the chain's root are pruned.
            const pruned: string[] = [];
            if (plan.checkpoint) {
              if (plan.kind.startsWith("full")) pruned.push(...chain.checkpoints.map((c) => c.name));
              else pruned.push(...chain.checkpoints.slice(1).map((c) => c.name));
              chain.checkpoints = chain.checkpoints.filter((c) => !pruned.includes(c.name));
              chain.bitmaps = chain.bitmaps.filter((b) => !pruned.includes(b.name));
              chain.checkpoints.push(plan.checkpoint);
              chain.bitmaps.push({
                target: "vda",
                name: plan.checkpoint.name,
                recording: true,
                inconsistent: false,
              });
            }
            f.finish(result(req.jobId, m, [["vda", plan.kind]], plan.checkpoint, pruned));
          },
          (e) => f.fail(e),
        )
        .finally(() => this.feeds.delete(req.jobId));
    }
    yield* this.follow(feed, req, ctx);
  }

  /** Streams a job's feed to one caller; a caller that goes away aborts the job unless it detached. */
  private async *follow<T>(
    feed: { subscribe(): AsyncIterable<T> & { end(): void } },
    req: { jobId: string; detachOnDisconnect: boolean },
    ctx: { signal: AbortSignal },
  ): AsyncGenerator<T> {
    const q = feed.subscribe();
    const onAbort = () => {
      if (!req.detachOnDisconnect) this.jobs.abort(req.jobId, "caller went away");
      q.end();
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      yield* q;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * A restore as the agent's contract says (docs/restore.md §1): a running job id attaches, a
   * finished one answers its recorded result, the job goes on when the caller goes away (AbortJob
   * stops it). The snapshot is read from the repository at the location given (a wrong location
   * fails as on a real host); the bytes are not written anywhere, only recorded in `restored`.
   */
  private async *restoreDisk(req: RestoreDiskRequest, ctx: CallContext): AsyncGenerator<RestoreDiskResponse> {
    this.restoreRequests.push({ kind: "disk", request: req });
    yield* this.runRestore<RestoreDiskResponse>("restore-disk", req, ctx, async (m) => {
      if (!m.disks.some((d) => d.target === req.diskTarget))
        throw new CairnError("not-found", `snapshot ${m.id} has no disk ${req.diskTarget}`);
      if (this.restored.has(req.destination) && !req.overwrite)
        throw new CairnError("failed-precondition", `${req.destination} exists; --force replaces it`);
      this.restored.set(req.destination, m.id);
      return {
        jobId: req.jobId,
        event: {
          $case: "result",
          value: {
            destination: req.destination,
            format: req.format,
            targetKind: req.overwrite ? "replaced-file" : "file",
            bytesWritten: 1n << 20n,
            bytesZeroed: 0n,
          },
        },
      };
    });
  }

  private async *restoreVm(req: RestoreVmRequest, ctx: CallContext): AsyncGenerator<RestoreVmResponse> {
    this.restoreRequests.push({ kind: "vm", request: req });
    yield* this.runRestore<RestoreVmResponse>("restore-vm", req, ctx, async (m) => {
      const doms = this.hypervisor.domains;
      let uuid: string;
      let name: string;
      if (req.inPlace) {
        const d = doms.find((x) => x.uuid === m.vm.uuid);
        if (!d) throw new CairnError("not-found", `domain ${m.vm.name} is not defined on ${this.hostId}`);
        if (d.state !== "shutoff")
          throw new CairnError("failed-precondition", `domain ${d.name} is ${d.state}: shut it off first`);
        // Its disks were overwritten: no checkpoint or bitmap describes them any more.
        this.chains.set(d.uuid, { checkpoints: [], bitmaps: [] });
        if (req.start) d.state = "running";
        uuid = d.uuid;
        name = d.name;
      } else {
        name = req.newName || `${m.vm.name}-restored`;
        if (doms.some((x) => x.name === name))
          throw new CairnError("failed-precondition", `a domain named ${name} exists on ${this.hostId}`);
        uuid = `11111111-0000-4000-8000-${String(doms.length + 1).padStart(12, "0")}`;
        doms.push({
          uuid,
          name,
          state: req.start ? "running" : "shutoff",
          persistent: true,
          disks: m.disks.map((d) => ({
            target: d.target,
            format: req.format,
            source: `${req.destinationDir || "/img"}/${name}-${d.target}.${req.format}`,
            device: "disk",
          })),
          labels: {},
          hasGuestAgentChannel: true,
        });
      }
      this.restored.set(name, m.id);
      const dir = req.destinationDir || "/img";
      return {
        jobId: req.jobId,
        event: {
          $case: "result",
          value: {
            domainUuid: uuid,
            domainName: name,
            disks: m.disks.map((d) => ({
              target: d.target,
              path: req.pool ? "" : `${dir}/${name}-${d.target}.${req.format}`,
              format: req.format,
              bytesWritten: BigInt(d.virtualSize),
              pool: req.pool,
              volume: req.pool ? `${name}-${d.target}` : "",
            })),
            started: req.start,
            inPlace: req.inPlace,
          },
        },
      };
    });
  }

  private async *runRestore<T extends { jobId: string; event?: unknown }>(
    kind: string,
    req: { jobId: string; repository: string; snapshotId: string },
    ctx: CallContext,
    write: (m: SnapshotManifest) => Promise<T>,
  ): AsyncGenerator<T> {
    if (!req.jobId) throw new CairnError("invalid-argument", "job_id is required");
    const streams = jobStreamsOf<T>(this.jobs, kind);
    if (yield* streams.replayOrAttach(req.jobId, ctx.signal)) return;
    const attempt = (this.restoreRuns.get(req.jobId) ?? 0) + 1;
    this.restoreRuns.set(req.jobId, attempt);
    const { feed } = streams.start(
      req.jobId,
      `${kind}:${req.jobId}`,
      async (signal, f) => {
        const repo = await Repository.open(new LocalObjectStore(req.repository)).catch((e) => {
          throw new CairnError(
            "unavailable",
            `cannot open repository ${req.repository}: ${(e as Error).message}`,
          );
        });
        let m: SnapshotManifest;
        try {
          m = await repo.showSnapshot(req.snapshotId, signal);
        } finally {
          await repo.close();
        }
        const steps = 5;
        const total = m.disks.reduce((n, d) => n + d.virtualSize, 0);
        for (let i = 1; i <= steps; i++) {
          await sleep((this.behaviour.restoreMs ?? this.behaviour.durationMs) / steps, undefined, { signal });
          const progress: Progress = {
            bytesDone: BigInt(Math.round((total * i) / steps)),
            bytesTotal: BigInt(total),
            rate: 1e6,
            etaSeconds: steps - i,
            phase: "write",
          };
          f.publish("progress", { jobId: req.jobId, event: { $case: "progress", value: progress } } as T);
        }
        const fail = this.behaviour.failAttempt?.(req.jobId, attempt);
        if (fail) throw new ServerError(fail.code, fail.message);
        return write(m);
      },
      (ev) => ev,
    );
    yield* streams.follow(feed, req.jobId, { signal: ctx.signal, starter: true, detach: true });
  }

  /** Network path, mover side: "reads" the export and seals a snapshot into `req.repository`. */
  private async *readExport(req: Parameters<AgentServiceImplementation["readExport"]>[0], ctx: CallContext) {
    const ex = req.export;
    if (!ex) throw new ServerError(Status.INVALID_ARGUMENT, "export is required");
    let feed = this.readFeeds.get(req.jobId);
    if (!feed) {
      const f = new JobFeed<ReadExportResponse>();
      feed = f;
      const attempt = (this.reads.get(req.jobId) ?? 0) + 1;
      this.reads.set(req.jobId, attempt);
      const job = this.jobs.start(req.jobId, ex.domainUuid, async (signal) => {
        f.publish("state", {
          jobId: req.jobId,
          event: { $case: "jobState", value: BackupJobState.BACKUP_JOB_STATE_READING },
        });
        const steps = 5;
        for (let i = 1; i <= steps; i++) {
          await sleep((this.behaviour.readMs ?? this.behaviour.durationMs) / steps, undefined, { signal });
          f.publish("progress", {
            jobId: req.jobId,
            event: {
              $case: "progress",
              value: {
                bytesDone: BigInt(i << 20),
                bytesTotal: BigInt(steps << 20),
                rate: 1e6,
                etaSeconds: 1,
                phase: "read",
              },
            },
          });
        }
        return sealSimSnapshot(
          req.repository,
          { uuid: ex.domainUuid, name: ex.domainName },
          attempt,
          ex.domainXml || "<domain/>",
          req,
          signal,
        );
      });
      this.readFeeds.set(req.jobId, f);
      job
        .then(
          (m) => {
            const kinds = ex.disks.map((d) => [d.target, d.kind] as [string, string]);
            const r = result(req.jobId, m, kinds);
            f.finish({ jobId: req.jobId, event: r.event as ReadExportResponse["event"] });
          },
          (e) => f.fail(e),
        )
        .finally(() => this.readFeeds.delete(req.jobId));
    }
    yield* this.follow(feed, req, ctx);
  }
}

/** What the real agent's error middleware does: CairnErrors reach the caller with their status. */
async function* asServerErrors<T>(gen: AsyncGenerator<T>): AsyncGenerator<T> {
  try {
    yield* gen;
  } catch (e) {
    throw e instanceof CairnError ? new ServerError(toGrpcStatus(e.code), e.userMessage) : e;
  }
}

function result(
  jobId: string,
  m: SnapshotManifest,
  kinds: [string, string][],
  checkpoint?: CheckpointRecord,
  prunedCheckpoints: string[] = [],
): RunBackupResponse {
  return {
    jobId,
    event: {
      $case: "result",
      value: {
        snapshotId: m.id,
        manifestJson: JSON.stringify(m),
        checkpoint,
        prunedCheckpoints,
        diskKinds: Object.fromEntries(kinds),
        quiesced: true,
        consistencyReason: "",
        bytesRead: 1n << 20n,
        bytesNew: 1n << 20n,
        bytesStored: 4096n,
        freezeMs: 12,
      },
    },
  };
}

/** A domain for simulated hosts: uuid from n, one qcow2 disk. */
export const simDomain = (n: number, name: string, labels: Record<string, string> = {}): DomainInfo => ({
  uuid: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  name,
  state: "running",
  persistent: true,
  disks: [{ target: "vda", format: "qcow2", source: `/img/${name}.qcow2`, device: "disk" }],
  labels,
  hasGuestAgentChannel: true,
});

/** The sim's export of its one disk: what a reader needs (no NBD server behind it). */
function exportReadyOf(
  vm: DomainInfo,
  jobId: string,
  plan: { kind: string; checkpoint?: CheckpointRecord },
  mode: BackupMode,
): ExportReady {
  const full = plan.kind.startsWith("full");
  return {
    address: "127.0.0.1:10809",
    serverName: "sim",
    caPem: "",
    clientCertificatePem: "",
    disks: [
      {
        target: "vda",
        address: "",
        exportName: "vda",
        dirtyBitmap: full || plan.kind === "copy" ? "" : `backup-${jobId}`,
        sourceFormat: "qcow2",
        kind: plan.kind,
        incrementalFrom: "",
        parentSnapshot: "",
        fullReason: full ? plan.kind.replace(/^full: /, "") : "",
        bitmap: Boolean(plan.checkpoint),
      },
    ],
    newCheckpoint: plan.checkpoint?.name ?? "",
    domainUuid: vm.uuid,
    domainName: vm.name,
    domainXml: "<domain/>",
    configFilesJson: "{}",
    consistencyJson: JSON.stringify({ kind: "quiesced" }),
    freezeMs: 12,
    offline: vm.state !== "running",
    mode: mode,
    maxBytesPerSecond: 0n,
  };
}

/** What a simulated backup seals: one 1 MiB disk "vda" filled with the attempt number. */
async function sealSimSnapshot(
  location: string,
  vm: { uuid: string; name: string },
  attempt: number,
  domainXml: string,
  req: { jobId: string; labels: Record<string, string> },
  signal: AbortSignal,
): Promise<SnapshotManifest> {
  const r = await Repository.open(new LocalObjectStore(location));
  try {
    const w = await r.beginSnapshot({ vm, signal });
    const d = await w.addDisk({ target: "vda", virtualSize: 1 << 20, sourceFormat: "qcow2", kind: "full" });
    await d.write(0, Buffer.alloc(1 << 20, attempt));
    await d.finish();
    return await w.seal({
      domainXml,
      consistency: { kind: "quiesced" },
      labels: req.labels,
      extra: { jobId: req.jobId },
    });
  } finally {
    await r.close();
  }
}
