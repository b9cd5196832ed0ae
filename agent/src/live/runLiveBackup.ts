import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import { CONFIG_FILES_KEY } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { RestorePointWriter } from "../../../shared/src/repository/RestorePointWriter.js";
import { announceCheckpoint } from "../backup/announceCheckpoint.js";
import { BackupJobStateMachine } from "../backup/BackupJobState.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../backup/BackupRequest.js";
import { writeJobRecord } from "../backup/jobRecord.js";
import { type BackupPlan, planDisks } from "../backup/planDisks.js";
import { readExportsIntoSnapshot } from "../backup/readExportsIntoSnapshot.js";
import { readVmHistory } from "../backup/readVmHistory.js";
import type { FreezePhases } from "../guest/withFrozenGuest.js";
import { checkpointXml, pullBackupXml } from "../hypervisor/backupXml.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { createQcow2 } from "../image/qemuImg.js";
import { virtualSize } from "../image/virtualSize.js";
import { captureVmConfigFiles } from "../vmconfig/captureVmConfigFiles.js";
import { cleanBrokenCheckpoints } from "./cleanBrokenCheckpoints.js";
import { deleteCheckpointSafely } from "./deleteCheckpointSafely.js";
import { pruneCheckpoints } from "./pruneCheckpoints.js";
import { quiesceAround } from "./quiesceAround.js";

export interface LiveBackupResult {
  manifest: SnapshotManifest;
  plan: BackupPlan;
  /** Bytes read from the NBD export (what the changed-block tracking let us skip is not here). */
  bytesRead: number;
  freezeWindowMs: number | undefined;
  /** The freeze window split into the freeze call, begin while frozen, and the thaw call. */
  freezePhasesMs?: FreezePhases | undefined;
  prunedCheckpoints: string[];
}

/**
 * Backs up a running domain: plan per disk → (hooks, freeze) begin a pull backup with the new
 * checkpoint (thaw at once) → read dirty ∩ allocated extents over NBD into the repository → seal.
 * Whatever fails, the libvirt job is ended, a checkpoint created by this attempt is removed (its
 * bitmap merges back into its parent, so the chain stays valid), scratch files are deleted and the
 * guest is thawed.
 */
export async function runLiveBackup(
  deps: BackupDeps,
  config: BackupConfig,
  req: BackupRequest,
  /** The domain as already looked up (runBackup passes it). */
  known?: DomainInfo,
): Promise<LiveBackupResult> {
  const { hypervisor, repository, log } = deps;
  const signal = req.signal;
  const sm = new BackupJobStateMachine(req.jobId, log, req.onState);
  const jobDir = join(config.workDir, "jobs", req.jobId);
  let exportStarted = false;
  /** The early end of the libvirt job, once reading is done (see sealing). */
  let exportEnded: Promise<void> | undefined;
  let createdCheckpoint: string | undefined;
  let writer: RestorePointWriter | undefined;
  /** The scratch images being made; cleanup waits for it before deleting the job directory. */
  let scratchMade: Promise<void> | undefined;
  let domainName = req.domain;
  try {
    // ---- planning
    const domain = known ?? (await findDomain(hypervisor, req.domain, signal));
    domainName = domain.name;
    if (domain.state !== "running" && domain.state !== "paused") {
      throw new CairnError("failed-precondition", `domain ${domain.name} is ${domain.state}, not running`, {
        hint: "shut-off domains are backed up through the offline path",
      });
    }
    const disks = selectDisks(domain, req.disks);
    // Asked now and answered while planning runs (a guest-ping took 17-96 ms here under TCG while
    // the host was busy); a ping a few hundred ms before the freeze tells as much as one right before.
    const guestAnswers =
      req.quiesce !== "off" && domain.hasGuestAgentChannel
        ? deps.guestAgent.ping(domain.name, { signal, timeoutMs: config.guestPingTimeoutMs })
        : undefined;
    guestAnswers?.catch(() => {}); // awaited by quiesceAround; a failed job may never get there
    // Everything below depends only on the domain, so it runs beside the queries: the job directory,
    // then the scratch images (awaited before the freeze), and the repository's shared lock — a
    // repository locked by a prune fails the job now, before anything is frozen or made.
    const dirMade = makeJobDir(config, jobDir);
    scratchMade = dirMade.then(() => createScratchImages(jobDir, disks, signal));
    scratchMade.catch(() => {}); // awaited before the freeze, and by cleanup
    const locked = repository.beginSnapshot({ vm: { uuid: domain.uuid, name: domain.name }, signal });
    const [queried, made, lockHeld] = await Promise.allSettled([
      Promise.all([
        hypervisor.listCheckpoints(domain.name, signal),
        readVmHistory(repository, req.history, domain.uuid, signal),
        req.mode === "copy" ? Promise.resolve(undefined) : hypervisor.liveBitmaps(domain.name, signal),
        hypervisor.backupJob(domain.name, signal),
      ]),
      dirMade,
      locked,
    ]);
    if (lockHeld.status === "fulfilled") writer = lockHeld.value; // cleanup aborts it if we fail
    if (queried.status === "rejected") throw queried.reason;
    if (made.status === "rejected") throw made.reason;
    if (lockHeld.status === "rejected") throw lockHeld.reason;
    const snapshot = lockHeld.value;
    const [checkpoints, history, liveBitmaps, runningJob] = queried.value;
    // Refuse a busy domain now, not from inside the freeze window.
    if (runningJob) {
      throw new CairnError("failed-precondition", `domain ${domain.name} already has a backup job running`, {
        hint: "wait for it to finish, or end it (virsh domjobabort) if it is stale",
      });
    }
    if (req.mode === "incremental" && history.length === 0) {
      throw new CairnError(
        "failed-precondition",
        `no earlier backup of ${domain.name} in ${repository.location} to be incremental to`,
        {
          hint: "run a full backup first, or use mode auto",
        },
      );
    }
    const plan = planDisks({
      mode: req.mode,
      disks: disks.map((d) => ({ target: d.target, format: d.format })),
      checkpoints,
      history,
      liveBitmaps,
      checkpointName: `cairn-${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}Z-${randomBytes(3).toString("hex")}`,
    });
    log.info({ jobId: req.jobId, domain: domain.name, plan }, "backup plan");
    const cleaned = await cleanBrokenCheckpoints(deps, domain.name, checkpoints, liveBitmaps, plan, signal);
    await announceCheckpoint(req, plan, checkpoints.filter((c) => !cleaned.includes(c.name)).at(-1)?.name);

    // What startup recovery needs if this process dies: which domain, which checkpoint.
    await writeJobRecord(jobDir, {
      jobId: req.jobId,
      domain: domain.name,
      checkpoint: plan.newCheckpoint,
      sealed: false,
      pid: process.pid,
    });
    const socketPath = join(jobDir, "nbd", "backup.sock");
    const backupXml = pullBackupXml({
      socketPath,
      disks: domain.disks
        .filter((d) => d.device === "disk")
        .map((d) => {
          const p = plan.disks.find((x) => x.target === d.target);
          return p
            ? {
                target: d.target,
                backup: true,
                scratchPath: join(jobDir, "scratch", `${d.target}.qcow2`),
                ...(p.incrementalFrom ? { incremental: p.incrementalFrom } : {}),
              }
            : { target: d.target, backup: false };
        }),
    });
    const cpXml = plan.newCheckpoint
      ? checkpointXml({
          name: plan.newCheckpoint,
          description: `cairn job ${req.jobId}`,
          disks: domain.disks
            .filter((d) => d.device === "disk")
            .map((d) => ({
              target: d.target,
              bitmap: plan.disks.find((x) => x.target === d.target)?.bitmap ?? false,
            })),
        })
      : undefined;

    // ---- quiescing: [checkpoint] → freeze → begin → thaw
    sm.to("quiescing");
    // When the guest is frozen, the checkpoint is made just before the freeze: libvirt validates
    // checkpoint XML against its largest schemas (~50 ms here), which would otherwise sit inside
    // the freeze window. Its bitmap then starts a moment before the point in time, so the next
    // incremental reads a superset of what changed, never less. Unfrozen, begin stays atomic.
    let checkpointMade = false;
    const scratchReady = scratchMade;
    // Calls that change the domain are not abandoned half-way when the job is aborted: libvirt
    // would finish them after our cleanup ran and leave a checkpoint or a backup job nobody ends
    // (seen in the lab: an abort during backup-begin under load kept the domain locked). They run
    // to completion, bounded, and the abort is honoured right after, with cleanup knowing of them.
    const toCompletion = () => AbortSignal.timeout(120_000);
    const beforeFreeze = async () => {
      const checkpoint = async () => {
        if (!plan.newCheckpoint || !cpXml) return;
        await hypervisor.createCheckpoint(domain.name, cpXml, toCompletion());
        createdCheckpoint = plan.newCheckpoint;
        checkpointMade = true;
        signal.throwIfAborted();
      };
      // Both before the freeze, side by side (qemu-img and libvirt each take tens of ms).
      const [cp, scratch] = await Promise.allSettled([checkpoint(), scratchReady]);
      if (cp.status === "rejected") throw cp.reason;
      if (scratch.status === "rejected") throw scratch.reason;
    };
    const begin = async () => {
      await scratchReady; // made already when the guest was frozen (beforeFreeze)
      await hypervisor.beginPullBackup(
        domain.name,
        {
          backupXml,
          reuseScratch: true,
          jobChecked: true,
          ...(cpXml && !checkpointMade ? { checkpointXml: cpXml } : {}),
        },
        toCompletion(),
      );
      exportStarted = true;
      if (plan.newCheckpoint) createdCheckpoint = plan.newCheckpoint;
      signal.throwIfAborted();
    };
    const { consistency, freezeWindowMs, freezePhasesMs } = await quiesceAround(deps, config, req, domain, {
      beforeFreeze,
      begin,
      guestAnswers,
    });

    // ---- reading
    sm.to("reading", { consistency: consistency.kind });
    const job = await hypervisor.backupJob(domain.name, signal);
    if (!job)
      throw new CairnError("internal", `backup job of ${domain.name} vanished right after it started`);
    const { bytesRead } = await readExportsIntoSnapshot(
      snapshot,
      plan,
      domain,
      plan.disks.map((p) => {
        const exp = job.disks.find((d) => d.target === p.target);
        if (!exp) throw new CairnError("internal", `libvirt exported no NBD export for ${p.target}`);
        return {
          target: p.target,
          socketPath: job.socket ?? socketPath,
          exportName: exp.exportName,
          ...(exp.exportBitmap ? { dirtyBitmap: exp.exportBitmap } : {}),
        };
      }),
      {
        requestSize: config.nbdRequestSize,
        depth: config.nbdDepth,
        chunkSize: repository.chunkSize,
        signal,
        ...(req.onProgress ? { onProgress: req.onProgress } : {}),
      },
    );

    // ---- sealing
    sm.to("sealing", { bytesRead });
    // Everything is read: the export can go now, beside the seal. If this fails, cleanup retries.
    exportEnded = hypervisor.endBackup(domain.name, signal).then(
      () => {
        exportStarted = false;
      },
      (e) => log.warn({ err: e, domain: domain.name }, "ending the backup job failed; retrying in cleanup"),
    );
    const domainXml = await hypervisor.domainXml(domain.name, { inactive: true }, signal);
    const configFiles = await captureVmConfigFiles(domainXml, config.vmConfigFiles, { signal, log });
    const manifest = await snapshot.seal({
      domainXml,
      consistency,
      labels: req.labels ?? {},
      jobId: req.jobId,
      extra: {
        jobId: req.jobId, // for readers older than the manifest's jobId field
        freezeWindowMs: freezeWindowMs ?? null,
        mode: req.mode,
        [CONFIG_FILES_KEY]: configFiles,
      },
      signal,
    });
    createdCheckpoint = undefined; // sealed: the checkpoint now belongs to a restore point
    await writeJobRecord(jobDir, {
      jobId: req.jobId,
      domain: domain.name,
      checkpoint: plan.newCheckpoint,
      sealed: true,
      pid: process.pid,
    });
    await exportEnded;
    const prunedCheckpoints = await pruneCheckpoints(deps, domain.name, plan, [...history, manifest], signal);
    sm.to("succeeded", { snapshotId: manifest.id, bytesRead });
    return { manifest, plan, bytesRead, freezeWindowMs, freezePhasesMs, prunedCheckpoints };
  } catch (err) {
    throw sm.fail(err, signal);
  } finally {
    // Cleanup never uses the job's signal: a cancelled job must still clean up.
    const cleanup = AbortSignal.timeout(60_000);
    if (writer) await writer.abort().catch((e) => log.warn({ err: e }, "abort of unsealed snapshot failed"));
    await exportEnded; // never rejects; it clears exportStarted when it worked
    if (exportStarted) {
      await hypervisor
        .endBackup(domainName, cleanup)
        .catch((e) => log.error({ err: e, domain: domainName }, "could not end the backup job"));
    }
    if (createdCheckpoint) {
      await deleteCheckpointSafely(deps, domainName, createdCheckpoint, cleanup);
    }
    await scratchMade?.catch(() => {}); // a qemu-img still writing into jobDir would outlive the rm
    await rm(jobDir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * The job's directory: the NBD socket's (owned by QEMU's user) and the scratch images', made before
 * the freeze so libvirt does not make them inside it (backup-begin --reuse-external).
 */
async function makeJobDir(config: BackupConfig, jobDir: string): Promise<void> {
  await mkdir(join(jobDir, "nbd"), { recursive: true });
  await mkdir(join(jobDir, "scratch"), { recursive: true });
  // QEMU (not root) opens the scratch images: every agent-owned level must be traversable.
  for (const d of [config.workDir, join(config.workDir, "jobs"), jobDir]) await chmod(d, 0o711);
  await chown(join(jobDir, "nbd"), config.qemuUid, config.qemuGid);
}

/** One empty qcow2 per disk, of the disk's virtual size: its copy-before-write target. */
async function createScratchImages(
  jobDir: string,
  disks: DomainInfo["disks"],
  signal: AbortSignal,
): Promise<void> {
  await Promise.all(
    disks.map(async (d) => {
      const size = await virtualSize(d.source, d.format, signal);
      await createQcow2(join(jobDir, "scratch", `${d.target}.qcow2`), size, signal);
    }),
  );
}

export async function findDomain(
  h: Hypervisor,
  nameOrUuid: string,
  signal: AbortSignal,
): Promise<DomainInfo> {
  const d = await h.domain(nameOrUuid, signal);
  if (!d)
    throw new CairnError("not-found", `no domain ${nameOrUuid} on this host`, {
      hint: "check the name with cairn agent domains",
    });
  return d;
}

function selectDisks(domain: DomainInfo, wanted: readonly string[] | undefined): DomainInfo["disks"] {
  const candidates = domain.disks.filter((d) => d.device === "disk" && d.source);
  if (!wanted?.length) return candidates;
  const missing = wanted.filter((t) => !candidates.some((d) => d.target === t));
  if (missing.length) {
    throw new CairnError(
      "invalid-argument",
      `domain ${domain.name} has no backup-capable disk ${missing.join(", ")}`,
      {
        hint: `its disks are ${candidates.map((d) => d.target).join(", ") || "(none)"}`,
      },
    );
  }
  return candidates.filter((d) => wanted.includes(d.target));
}
