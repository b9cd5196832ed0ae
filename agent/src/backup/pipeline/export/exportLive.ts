import { chmod, chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import { checkpointXml } from "../../../hypervisor/backupXml.js";
import type { DomainInfo } from "../../../hypervisor/DomainInfo.js";
import { jobDirOf } from "../../../jobs/checkJobId.js";
import { cleanBrokenCheckpoints } from "../../../live/cleanBrokenCheckpoints.js";
import { deleteCheckpointSafely } from "../../../live/deleteCheckpointSafely.js";
import { pruneCheckpoints } from "../../../live/pruneCheckpoints.js";
import { quiesceAround } from "../../../live/quiesceAround.js";
import { captureVmConfigFiles } from "../../../vmconfig/captureVmConfigFiles.js";
import { announceCheckpoint } from "../../announceCheckpoint.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../../BackupRequest.js";
import { writeJobRecord } from "../../jobRecord.js";
import { planDisks } from "../../planDisks.js";
import type { ExportDescriptor } from "../descriptor/ExportDescriptor.js";
import { newCheckpointName } from "../plan/newCheckpointName.js";
import { requireHistoryForIncremental } from "../plan/requireHistoryForIncremental.js";
import { selectDisks } from "../plan/selectDisks.js";
import { once } from "../undo/once.js";
import { UndoStack } from "../undo/UndoStack.js";
import type { DiskImages } from "./DiskImages.js";
import type { ExportOptions } from "./ExportOptions.js";
import type { LiveExportServer } from "./ExportServer.js";
import type { ExportSession } from "./ExportSession.js";
import { sessionFinish } from "./sessionFinish.js";

/**
 * Export stage for a running domain: plan per disk → (hooks, freeze) begin a pull backup with the
 * new checkpoint (thaw at once) → describe the export. Every change pushes its undo; a failure here
 * runs them all (the libvirt job is ended, a checkpoint made by this attempt removed — its bitmap
 * merges back into its parent — scratch files deleted) and the guest is always thawed.
 */
export async function exportLive(
  deps: Omit<BackupDeps, "repository">,
  config: BackupConfig,
  req: BackupRequest,
  domain: DomainInfo,
  opts: ExportOptions,
): Promise<ExportSession> {
  const { hypervisor, log } = deps;
  const { signal } = req;
  const undo = new UndoStack(log, { jobId: req.jobId, domain: domain.name });
  const jobDir = jobDirOf(config.workDir, req.jobId);
  opts.history.catch(() => {}); // awaited with planning; a job failing earlier never gets there
  try {
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
    // then the scratch images (awaited before the freeze) and the export server (network: the job's
    // credentials and port), and whatever the caller must have first (the repository's lock).
    const dirMade = makeJobDir(config, jobDir);
    const scratchMade = dirMade.then(() => createScratchImages(opts.images, jobDir, disks, signal));
    scratchMade.catch(() => {}); // awaited before the freeze, and by cleanup
    // Pushed first, so it runs last: a qemu-img still writing into jobDir would outlive the rm.
    undo.push(
      "remove the job directory",
      async () => {
        await scratchMade.catch(() => {});
        await rm(jobDir, { recursive: true, force: true });
      },
      "cleanup",
    );
    const serverMade = dirMade.then(() => opts.server.live({ jobId: req.jobId, jobDir, signal }));
    const [queried, made, ready, served] = await Promise.allSettled([
      Promise.all([
        hypervisor.listCheckpoints(domain.name, signal),
        opts.history,
        req.mode === "copy" ? Promise.resolve(undefined) : hypervisor.liveBitmaps(domain.name, signal),
        hypervisor.backupJob(domain.name, signal),
      ]),
      dirMade,
      opts.ready,
      serverMade,
    ]);
    if (served.status === "fulfilled") {
      const srv = served.value;
      undo.push("release the export server", (s) => srv.close(s), "cleanup");
    }
    if (queried.status === "rejected") throw queried.reason;
    if (made.status === "rejected") throw made.reason;
    if (ready.status === "rejected") throw ready.reason;
    if (served.status === "rejected") throw served.reason;
    const server: LiveExportServer = served.value;
    const [checkpoints, history, liveBitmaps, runningJob] = queried.value;
    // Refuse a busy domain now, not from inside the freeze window.
    if (runningJob) {
      throw new CairnError("failed-precondition", `domain ${domain.name} already has a backup job running`, {
        hint: "wait for it to finish, or end it (virsh domjobabort) if it is stale",
      });
    }
    requireHistoryForIncremental(req.mode, history.length, domain.name);
    const plan = planDisks({
      mode: req.mode,
      disks: disks.map((d) => ({ target: d.target, format: d.format })),
      checkpoints,
      history,
      liveBitmaps,
      checkpointName: newCheckpointName(),
      fullReasons: req.fullReasons,
    });
    log.info({ jobId: req.jobId, domain: domain.name, plan }, "backup plan");
    const cleaned = await cleanBrokenCheckpoints(deps, domain.name, checkpoints, liveBitmaps, plan, signal);
    await announceCheckpoint(req, plan, checkpoints.filter((c) => !cleaned.includes(c.name)).at(-1)?.name);

    // What startup recovery needs if this process dies: which domain, which checkpoint.
    const record = {
      jobId: req.jobId,
      domain: domain.name,
      checkpoint: plan.newCheckpoint,
      pid: process.pid,
    };
    await writeJobRecord(jobDir, { ...record, sealed: false });
    const domainDisks = domain.disks.filter((d) => d.device === "disk");
    const backupXml = server.backupXml(
      domainDisks.map((d) => {
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
    );
    const cpXml = plan.newCheckpoint
      ? checkpointXml({
          name: plan.newCheckpoint,
          description: `cairn job ${req.jobId}`,
          disks: domainDisks.map((d) => ({
            target: d.target,
            bitmap: plan.disks.find((x) => x.target === d.target)?.bitmap ?? false,
          })),
        })
      : undefined;

    // ---- quiescing: [checkpoint] → freeze → begin → thaw
    opts.states.to("quiescing");
    // Network path: libvirt's TLS directory holds this job's credentials from here until
    // backup-begin returned; taken before the freeze so waiting for another job is not frozen time.
    const release = await server.holdForBegin(signal);
    undo.push("release libvirt's TLS directory", () => release(), "cleanup");
    const deleteCheckpoint = (name: string) =>
      undo.push(`delete checkpoint ${name}`, (s) => deleteCheckpointSafely(deps, domain.name, name, s));
    // Calls that change the domain are not abandoned half-way when the job is aborted: libvirt
    // would finish them after our cleanup ran and leave a checkpoint or a backup job nobody ends
    // (seen in the lab: an abort during backup-begin under load kept the domain locked). They run
    // to completion, bounded, and the abort is honoured right after, with the undo stack knowing.
    const toCompletion = () => AbortSignal.timeout(120_000);
    // When the guest is frozen, the checkpoint is made just before the freeze: libvirt validates
    // checkpoint XML against its largest schemas (~50 ms here), which would otherwise sit inside
    // the freeze window. Its bitmap then starts a moment before the point in time, so the next
    // incremental reads a superset of what changed, never less. Unfrozen, begin stays atomic.
    let checkpointBeforeBegin = false;
    const beforeFreeze = async () => {
      const checkpoint = async () => {
        if (!plan.newCheckpoint || !cpXml) return;
        await hypervisor.createCheckpoint(domain.name, cpXml, toCompletion());
        checkpointBeforeBegin = true;
        deleteCheckpoint(plan.newCheckpoint);
        signal.throwIfAborted();
      };
      // Both before the freeze, side by side (qemu-img and libvirt each take tens of ms).
      const [cp, scratch] = await Promise.allSettled([checkpoint(), scratchMade]);
      if (cp.status === "rejected") throw cp.reason;
      if (scratch.status === "rejected") throw scratch.reason;
    };
    const endBackup = once((s: AbortSignal) => hypervisor.endBackup(domain.name, s));
    const begin = async () => {
      await scratchMade; // made already when the guest was frozen (beforeFreeze)
      const atomic = cpXml && !checkpointBeforeBegin;
      await hypervisor.beginPullBackup(
        domain.name,
        { backupXml, reuseScratch: true, jobChecked: true, ...(atomic ? { checkpointXml: cpXml } : {}) },
        toCompletion(),
      );
      if (atomic && plan.newCheckpoint) deleteCheckpoint(plan.newCheckpoint);
      // Twice at most: the early end (endExport) may fail while this step waits on it.
      undo.push("end the backup job", (s) => endBackup(s).catch(() => endBackup(s)), "cleanup");
      await release();
      signal.throwIfAborted();
    };
    const { consistency, freezeWindowMs, freezePhasesMs } = await quiesceAround(deps, config, req, domain, {
      beforeFreeze,
      begin,
      guestAnswers,
    });

    // ---- describe the export
    const job = await hypervisor.backupJob(domain.name, signal);
    if (!job)
      throw new CairnError("internal", `backup job of ${domain.name} vanished right after it started`);
    const domainXml = await hypervisor.domainXml(domain.name, { inactive: true }, signal);
    const configFiles = await captureVmConfigFiles(domainXml, config.vmConfigFiles, { signal, log });
    const descriptor: ExportDescriptor = {
      domain: { uuid: domain.uuid, name: domain.name },
      disks: plan.disks.map((p) => {
        const exp = job.disks.find((d) => d.target === p.target);
        if (!exp) throw new CairnError("internal", `libvirt exported no NBD export for ${p.target}`);
        return {
          target: p.target,
          endpoint: server.endpoint(exp.exportName, job.socket),
          exportName: exp.exportName,
          dirtyBitmap: exp.exportBitmap,
          sourceFormat: disks.find((d) => d.target === p.target)?.format ?? "",
          plan: p,
        };
      }),
      newCheckpoint: plan.newCheckpoint,
      domainXml,
      configFiles,
      consistency,
      freezeWindowMs,
      offline: false,
      mode: req.mode,
      maxBytesPerSecond: opts.server.maxBytesPerSecond,
    };
    // Sealed: the checkpoint now belongs to a restore point.
    const finish = sessionFinish({
      undo,
      log,
      jobId: req.jobId,
      domain: domain.name,
      recordSeal: () => writeJobRecord(jobDir, { ...record, sealed: true }),
      afterSeal: (sealed) => pruneCheckpoints(deps, domain.name, plan, [...history, sealed], signal),
    });
    return {
      descriptor,
      plan,
      freezePhasesMs,
      // Everything is read: the export can go now, beside the seal; finish() retries a failure.
      endExport: () =>
        endBackup(signal).catch((e) =>
          log.warn({ err: e, domain: domain.name }, "ending the backup job failed; retrying in cleanup"),
        ),
      finish,
    };
  } catch (err) {
    await undo.runAll();
    throw err;
  }
}

/**
 * The job's directory: the NBD socket's (owned by QEMU's user) and the scratch images', made before
 * the freeze so libvirt does not make them inside it (backup-begin --reuse-external).
 */
async function makeJobDir(config: BackupConfig, jobDir: string): Promise<void> {
  await mkdir(join(jobDir, "nbd"), { recursive: true });
  await mkdir(join(jobDir, "scratch"), { recursive: true });
  // QEMU (not root) opens the scratch images by path: every agent-owned level above them is
  // traversable (0711), none listable by others; the socket directory is QEMU's alone.
  for (const d of [config.workDir, join(config.workDir, "jobs"), jobDir, join(jobDir, "scratch")])
    await chmod(d, 0o711);
  await chown(join(jobDir, "nbd"), config.qemuUid, config.qemuGid);
  await chmod(join(jobDir, "nbd"), 0o700);
}

/** One empty qcow2 per disk, of the disk's virtual size: its copy-before-write target. */
async function createScratchImages(
  images: DiskImages,
  jobDir: string,
  disks: DomainInfo["disks"],
  signal: AbortSignal,
): Promise<void> {
  await Promise.all(
    disks.map(async (d) => {
      const size = await images.virtualSize(d.source, d.format, signal);
      await images.createQcow2(join(jobDir, "scratch", `${d.target}.qcow2`), size, signal);
    }),
  );
}
