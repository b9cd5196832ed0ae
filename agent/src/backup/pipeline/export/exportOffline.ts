import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CairnError, isCairnError } from "../../../../../shared/src/errors/CairnError.js";
import { checkpointRedefineXml } from "../../../hypervisor/backupXml.js";
import type { DomainInfo } from "../../../hypervisor/DomainInfo.js";
import type { LiveBitmap } from "../../../hypervisor/Hypervisor.js";
import type { ImageInfo } from "../../../image/qemuImg.js";
import { jobDirOf } from "../../../jobs/checkJobId.js";
import { captureVmConfigFiles } from "../../../vmconfig/captureVmConfigFiles.js";
import { announceCheckpoint } from "../../announceCheckpoint.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../../BackupRequest.js";
import { type JobRecord, type OfflineJournal, writeJobRecord } from "../../jobRecord.js";
import { planDisks } from "../../planDisks.js";
import type { ExportDescriptor, ExportedDisk } from "../descriptor/ExportDescriptor.js";
import { newCheckpointName } from "../plan/newCheckpointName.js";
import { requireHistoryForIncremental } from "../plan/requireHistoryForIncremental.js";
import { selectDisks } from "../plan/selectDisks.js";
import { once } from "../undo/once.js";
import { UndoStack } from "../undo/UndoStack.js";
import type { DiskImages } from "./DiskImages.js";
import type { ExportOptions } from "./ExportOptions.js";
import type { ExportSession } from "./ExportSession.js";
import { sessionFinish } from "./sessionFinish.js";

/**
 * Export stage for a shut-off domain, without starting it: the new checkpoint's bitmap is added
 * with qemu-img, qemu-nbd exports each disk read-only (qcow2 with the chain's dirty bitmap), and
 * libvirt's checkpoint metadata is redefined so the next live backup continues the same chain.
 * Every earlier checkpoint's bitmap stays enabled, as libvirt (since 6.x) keeps them all recording:
 * a differential exports the chain root's bitmap, and libvirt refuses one that is not recording.
 *
 * Nothing is changed before every image is known to be free (QEMU's image lock: a QEMU on another
 * host may hold it), and each change is journalled in the job record before it is made, so that
 * startup recovery (recoverOfflineJob) ends an orphan qemu-nbd and undoes the bitmaps of an agent
 * that died mid-backup. Every change is rolled back through the undo stack unless the backup seals.
 */
export async function exportOffline(
  deps: Omit<BackupDeps, "repository">,
  config: BackupConfig,
  req: BackupRequest,
  domain: DomainInfo,
  opts: ExportOptions,
): Promise<ExportSession> {
  const { hypervisor, log } = deps;
  const { signal } = req;
  const undo = new UndoStack(log, { jobId: req.jobId, domain: domain.name, offline: true });
  const jobDir = jobDirOf(config.workDir, req.jobId);
  opts.history.catch(() => {}); // awaited with planning; a job failing earlier never gets there
  try {
    const disks = selectDisks(domain, req.disks);
    const dirMade = mkdir(jobDir, { recursive: true, mode: 0o700 });
    undo.push("remove the job directory", () => rm(jobDir, { recursive: true, force: true }), "cleanup");
    const [queried, made, ready] = await Promise.allSettled([
      Promise.all([hypervisor.listCheckpoints(domain.name, signal), opts.history]),
      dirMade,
      opts.ready,
    ]);
    if (queried.status === "rejected") throw queried.reason;
    if (made.status === "rejected") throw made.reason;
    if (ready.status === "rejected") throw ready.reason;
    const [checkpoints, history] = queried.value;
    // Without -U: this fails on an image another process holds, before anything is changed.
    const infos = new Map<string, ImageInfo>();
    for (const d of disks)
      infos.set(d.target, await imageInfoUnlessStarted(deps, opts.images, domain.name, d.source, signal));
    // The bitmaps stored in each image; "in-use" ones were never closed cleanly.
    const bitmaps = new Map<string, LiveBitmap[]>();
    for (const [t, info] of infos)
      bitmaps.set(
        t,
        info.bitmaps.map((b) => ({ name: b.name, inconsistent: b.flags.includes("in-use") })),
      );
    requireHistoryForIncremental(req.mode, history.length, domain.name);
    const plan = planDisks({
      mode: req.mode,
      disks: disks.map((d) => ({ target: d.target, format: infos.get(d.target)?.format ?? d.format })),
      checkpoints,
      history,
      liveBitmaps: req.mode === "copy" ? undefined : bitmaps,
      checkpointName: newCheckpointName(),
      fullReasons: req.fullReasons,
    });
    log.info({ jobId: req.jobId, domain: domain.name, plan, offline: true }, "backup plan");
    const latest = checkpoints.at(-1);
    await announceCheckpoint(req, plan, latest?.name);
    const journal: OfflineJournal = { addedBitmaps: [], exports: [], redefined: null };
    const rec: JobRecord = {
      jobId: req.jobId,
      domain: domain.name,
      checkpoint: plan.newCheckpoint,
      sealed: false,
      pid: process.pid,
      offline: journal,
    };
    /** Records what is about to change, durably, before it changes. */
    const journalled = () => writeJobRecord(jobDir, rec);
    await journalled();

    // ---- exporting: bitmaps first (qemu-img needs the write lock), then read-only exports
    opts.states.to("quiescing", { offline: true });
    const sourceOf = (target: string) => disks.find((d) => d.target === target)!.source;
    const exportBitmaps = new Map<string, string>();
    for (const p of plan.disks) {
      const src = sourceOf(p.target);
      if (p.incrementalFrom) {
        const chain = checkpoints
          .slice(checkpoints.findIndex((c) => c.name === p.incrementalFrom))
          .map((c) => c.bitmaps[p.target])
          .filter((b): b is string => !!b);
        if (chain.length === 1) exportBitmaps.set(p.target, chain[0]!);
        else {
          // An incremental across several checkpoints reads the union of their bitmaps; it goes
          // whatever happens (cleanup), after the exports reading it ended.
          const tmp = `cairn-export-${randomBytes(3).toString("hex")}`;
          journal.addedBitmaps.push({ image: src, bitmap: tmp, temporary: true });
          await journalled();
          await opts.images.bitmap(src, tmp, ["--add", ...chain.flatMap((b) => ["--merge", b])], signal);
          undo.push(
            `remove bitmap ${tmp} of ${p.target}`,
            (s) => opts.images.bitmap(src, tmp, ["--remove"], s),
            "cleanup",
          );
          exportBitmaps.set(p.target, tmp);
        }
      }
      if (p.bitmap && plan.newCheckpoint) {
        // The previous checkpoints' bitmaps stay enabled: a later differential reads from the root's.
        const name = plan.newCheckpoint;
        journal.addedBitmaps.push({ image: src, bitmap: name, temporary: false });
        await journalled();
        await opts.images.bitmap(src, name, ["--add"], signal);
        undo.push(`remove bitmap ${name} of ${p.target}`, (s) =>
          opts.images.bitmap(src, name, ["--remove"], s),
        );
      }
    }
    const exported: ExportedDisk[] = [];
    const stops: (() => Promise<void>)[] = [];
    for (const p of plan.disks) {
      const d = disks.find((x) => x.target === p.target)!;
      const bitmap = exportBitmaps.get(p.target);
      const entry = { socket: join(jobDir, `${p.target}.sock`), pid: null as number | null };
      journal.exports.push(entry);
      await journalled();
      const e = await opts.server.qemuNbd({
        jobDir,
        socketPath: entry.socket,
        image: d.source,
        format: infos.get(p.target)?.format ?? d.format,
        exportName: p.target,
        ...(bitmap ? { bitmap } : {}),
        signal,
      });
      const stop = once(() => e.stop());
      stops.push(stop);
      undo.push(`stop the export of ${p.target}`, () => stop(), "cleanup");
      entry.pid = e.pid ?? null;
      await journalled();
      exported.push({
        target: p.target,
        endpoint: e.endpoint,
        exportName: p.target,
        dirtyBitmap: bitmap,
        sourceFormat: d.format,
        plan: p,
      });
    }

    // libvirt learns the checkpoint before the reader seals, so a sealed snapshot never names an
    // unknown one; without a seal the metadata is dropped again.
    const domainXml = await hypervisor.domainXml(domain.name, { inactive: true }, signal);
    const configFiles = await captureVmConfigFiles(domainXml, config.vmConfigFiles, { signal, log });
    if (plan.newCheckpoint) {
      const name = plan.newCheckpoint;
      const xml = checkpointRedefineXml({
        name,
        parent: latest?.name,
        creationTime: Date.now() / 1000,
        disks: domain.disks
          .filter((d) => d.device === "disk")
          .map((d) => ({
            target: d.target,
            bitmap: plan.disks.find((x) => x.target === d.target)?.bitmap ? name : null,
          })),
        domainXml,
      });
      journal.redefined = name;
      await journalled();
      await hypervisor.redefineCheckpoint(domain.name, xml, { validate: false }, signal);
      undo.push(`drop checkpoint metadata ${name}`, (s) =>
        hypervisor.deleteCheckpoint(domain.name, name, { metadataOnly: true }, s),
      );
    }
    const descriptor: ExportDescriptor = {
      domain: { uuid: domain.uuid, name: domain.name },
      disks: exported,
      newCheckpoint: plan.newCheckpoint,
      domainXml,
      configFiles,
      consistency: { kind: "quiesced" }, // shut off: nothing writes the disks
      freezeWindowMs: undefined,
      offline: true,
      mode: req.mode,
      maxBytesPerSecond: opts.server.maxBytesPerSecond,
    };
    // Sealed: the new checkpoint's bitmap and metadata belong to the restore point; exports,
    // temporary export bitmaps and the job directory go.
    const finish = sessionFinish({
      undo,
      log,
      jobId: req.jobId,
      domain: domain.name,
      recordSeal: async () => {
        rec.sealed = true;
        await journalled().catch((e) => log.warn({ err: e, jobId: req.jobId }, "could not record the seal"));
      },
    });
    return {
      descriptor,
      plan,
      freezePhasesMs: undefined,
      endExport: async () => {
        for (const stop of stops)
          await stop().catch((e) =>
            log.warn({ err: e, domain: domain.name }, "stopping qemu-nbd failed; retrying in cleanup"),
          );
      },
      finish,
    };
  } catch (err) {
    await undo.runAll();
    throw err;
  }
}

/**
 * `qemu-img info` without -U. An image held by another process is refused as in use by another
 * QEMU (deferred: the VM may run elsewhere), unless the VM was started here meanwhile: then it is
 * simply no longer shut off.
 */
async function imageInfoUnlessStarted(
  deps: Pick<BackupDeps, "hypervisor">,
  images: DiskImages,
  domain: string,
  image: string,
  signal: AbortSignal,
): Promise<ImageInfo> {
  try {
    return await images.info(image, signal);
  } catch (err) {
    if (!isCairnError(err, "failed-precondition") || err.details?.deferred !== "moved") throw err;
    const now = await deps.hypervisor.domain(domain, signal).catch(() => undefined);
    if (now && (now.state === "running" || now.state === "paused")) {
      throw new CairnError("failed-precondition", `domain ${domain} was started during its offline backup`, {
        hint: "it will be backed up live on the next attempt",
        cause: err,
      });
    }
    throw err;
  }
}
