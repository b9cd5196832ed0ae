import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import { CONFIG_FILES_KEY } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { RestorePointWriter } from "../../../shared/src/repository/RestorePointWriter.js";
import { announceCheckpoint } from "../backup/announceCheckpoint.js";
import { BackupJobStateMachine } from "../backup/BackupJobState.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../backup/BackupRequest.js";
import { type JobRecord, type OfflineJournal, writeJobRecord } from "../backup/jobRecord.js";
import { type BackupPlan, planDisks } from "../backup/planDisks.js";
import { readExportsIntoSnapshot } from "../backup/readExportsIntoSnapshot.js";
import { readVmHistory } from "../backup/readVmHistory.js";
import { checkpointRedefineXml } from "../hypervisor/backupXml.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { LiveBitmap } from "../hypervisor/Hypervisor.js";
import { bitmapOps, imageInfo } from "../image/qemuImg.js";
import { captureVmConfigFiles } from "../vmconfig/captureVmConfigFiles.js";
import { QemuNbdExport } from "./QemuNbdExport.js";

export interface OfflineBackupResult {
  manifest: SnapshotManifest;
  plan: BackupPlan;
  bytesRead: number;
}

/**
 * Backs up a shut-off domain without starting it: qemu-nbd exports each disk read-only (qcow2 with
 * the chain's dirty bitmap), the new checkpoint's bitmap is added with qemu-img, and libvirt's
 * checkpoint metadata is redefined so the next live backup continues the same chain. Every earlier
 * checkpoint's bitmap stays enabled, as libvirt (since 6.x) keeps them all recording: a differential
 * exports the chain root's bitmap, and libvirt refuses one that is not recording.
 *
 * Nothing is changed before every image is known to be free (QEMU's image lock: a QEMU on another
 * host may hold it), and each change is written to the job record before it is made, so that
 * startup recovery (recoverOfflineJob) ends an orphan qemu-nbd and undoes the bitmaps of an
 * agent that died mid-backup. Every bitmap change is rolled back if the backup does not seal.
 */
export async function runOfflineBackup(
  deps: BackupDeps,
  config: BackupConfig,
  req: Omit<BackupRequest, "quiesce" | "hooks">,
  domain: DomainInfo,
): Promise<OfflineBackupResult> {
  const { hypervisor, repository, log } = deps;
  const { signal } = req;
  const sm = new BackupJobStateMachine(req.jobId, log, req.onState);
  const jobDir = join(config.workDir, "jobs", req.jobId);
  const undo: (() => Promise<void>)[] = [];
  const exports: QemuNbdExport[] = [];
  let writer: RestorePointWriter | undefined;
  let sealed = false;
  try {
    const disks = domain.disks.filter(
      (d) => d.device === "disk" && d.source && (!req.disks?.length || req.disks.includes(d.target)),
    );
    const [checkpoints, history] = await Promise.all([
      hypervisor.listCheckpoints(domain.name, signal),
      readVmHistory(repository, req.history, domain.uuid, signal),
    ]);
    // Without -U: this fails on an image another process holds, before anything is changed.
    const infos = new Map<string, Awaited<ReturnType<typeof imageInfo>>>();
    for (const d of disks)
      infos.set(d.target, await imageInfoUnlessStarted(deps, domain.name, d.source, signal));
    // The bitmaps stored in each image; "in-use" ones were never closed cleanly.
    const bitmaps = new Map<string, LiveBitmap[]>();
    for (const [t, info] of infos)
      bitmaps.set(
        t,
        info.bitmaps.map((b) => ({ name: b.name, inconsistent: b.flags.includes("in-use") })),
      );
    const plan = planDisks({
      mode: req.mode,
      disks: disks.map((d) => ({ target: d.target, format: infos.get(d.target)?.format ?? d.format })),
      checkpoints,
      history,
      liveBitmaps: req.mode === "copy" ? undefined : bitmaps,
      checkpointName: `cairn-${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}Z-${randomBytes(3).toString("hex")}`,
    });
    log.info({ jobId: req.jobId, domain: domain.name, plan, offline: true }, "backup plan");
    await announceCheckpoint(req, plan, checkpoints.at(-1)?.name);
    await mkdir(jobDir, { recursive: true, mode: 0o700 });
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
    sm.to("quiescing", { offline: true });
    const latest = checkpoints.at(-1);
    const exportBitmaps = new Map<string, string>();
    for (const p of plan.disks) {
      const src = disks.find((d) => d.target === p.target)!.source;
      if (p.incrementalFrom) {
        const chain = checkpoints
          .slice(checkpoints.findIndex((c) => c.name === p.incrementalFrom))
          .map((c) => c.bitmaps[p.target])
          .filter((b): b is string => !!b);
        if (chain.length === 1) exportBitmaps.set(p.target, chain[0]!);
        else {
          // An incremental across several checkpoints reads the union of their bitmaps.
          const tmp = `cairn-export-${randomBytes(3).toString("hex")}`;
          journal.addedBitmaps.push({ image: src, bitmap: tmp, temporary: true });
          await journalled();
          await bitmapOps(src, tmp, ["--add", ...chain.flatMap((b) => ["--merge", b])], signal);
          undo.push(() => bitmapOps(src, tmp, ["--remove"], AbortSignal.timeout(60_000)));
          exportBitmaps.set(p.target, tmp);
        }
      }
      if (p.bitmap && plan.newCheckpoint) {
        // The previous checkpoints' bitmaps stay enabled: a later differential reads from the root's.
        const name = plan.newCheckpoint;
        journal.addedBitmaps.push({ image: src, bitmap: name, temporary: false });
        await journalled();
        await bitmapOps(src, name, ["--add"], signal);
        undo.push(() => bitmapOps(src, name, ["--remove"], AbortSignal.timeout(60_000)));
      }
    }
    for (const p of plan.disks) {
      const d = disks.find((x) => x.target === p.target)!;
      const bitmap = exportBitmaps.get(p.target);
      const entry = { socket: join(jobDir, `${p.target}.sock`), pid: null as number | null };
      journal.exports.push(entry);
      await journalled();
      const e = await QemuNbdExport.start({
        image: d.source,
        format: infos.get(p.target)?.format ?? d.format,
        socketPath: entry.socket,
        exportName: p.target,
        ...(bitmap ? { bitmap } : {}),
        startTimeoutMs: 30_000,
        signal,
      });
      exports.push(e);
      entry.pid = e.pid ?? null;
      await journalled();
    }

    // ---- reading
    sm.to("reading", { offline: true });
    writer = await repository.beginSnapshot({ vm: { uuid: domain.uuid, name: domain.name }, signal });
    const { bytesRead } = await readExportsIntoSnapshot(
      writer,
      plan,
      domain,
      exports.map((e) => ({
        target: e.exportName,
        socketPath: e.socketPath,
        exportName: e.exportName,
        ...(exportBitmaps.get(e.exportName) ? { dirtyBitmap: exportBitmaps.get(e.exportName)! } : {}),
      })),
      {
        requestSize: config.nbdRequestSize,
        depth: config.nbdDepth,
        chunkSize: repository.chunkSize,
        signal,
        ...(req.onProgress ? { onProgress: req.onProgress } : {}),
      },
    );
    for (const e of exports.splice(0)) await e.stop();

    // ---- sealing: libvirt learns the checkpoint first, so a sealed snapshot never names an unknown one
    sm.to("sealing", { bytesRead });
    const domainXml = await hypervisor.domainXml(domain.name, { inactive: true }, signal);
    const configFiles = await captureVmConfigFiles(domainXml, config.vmConfigFiles, { signal, log });
    if (plan.newCheckpoint) {
      const xml = checkpointRedefineXml({
        name: plan.newCheckpoint,
        parent: latest?.name,
        creationTime: Date.now() / 1000,
        disks: domain.disks
          .filter((d) => d.device === "disk")
          .map((d) => ({
            target: d.target,
            bitmap: plan.disks.find((x) => x.target === d.target)?.bitmap ? plan.newCheckpoint : null,
          })),
        domainXml,
      });
      const name = plan.newCheckpoint;
      journal.redefined = name;
      await journalled();
      await hypervisor.redefineCheckpoint(domain.name, xml, { validate: false }, signal);
      undo.push(() =>
        hypervisor.deleteCheckpoint(domain.name, name, { metadataOnly: true }, AbortSignal.timeout(60_000)),
      );
    }
    const manifest = await writer.seal({
      domainXml,
      consistency: { kind: "quiesced" },
      labels: req.labels ?? {},
      jobId: req.jobId,
      // extra.jobId too: readers older than the manifest's jobId field look there.
      extra: { jobId: req.jobId, mode: req.mode, offline: true, [CONFIG_FILES_KEY]: configFiles },
      signal,
    });
    sealed = true;
    rec.sealed = true;
    await journalled().catch((e) => log.warn({ err: e, jobId: req.jobId }, "could not record the seal"));
    // Temporary export bitmaps go; the new checkpoint's bitmap stays.
    undo.length = 0;
    for (const p of plan.disks) {
      const tmp = exportBitmaps.get(p.target);
      if (tmp?.startsWith("cairn-export-"))
        await bitmapOps(disks.find((d) => d.target === p.target)!.source, tmp, ["--remove"], signal);
    }
    sm.to("succeeded", { snapshotId: manifest.id, bytesRead });
    return { manifest, plan, bytesRead };
  } catch (err) {
    throw sm.fail(err, signal);
  } finally {
    for (const e of exports) await e.stop().catch(() => {});
    if (writer && !sealed) await writer.abort().catch(() => {});
    if (!sealed) {
      for (const u of undo.reverse()) {
        await u().catch((e) =>
          log.error({ err: e, domain: domain.name }, "offline backup rollback step failed"),
        );
      }
    }
    await rm(jobDir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * `qemu-img info` without -U. An image held by another process is refused as in use by another
 * QEMU (deferred: the VM may run elsewhere), unless the VM was started here meanwhile: then it is
 * simply no longer shut off.
 */
async function imageInfoUnlessStarted(
  deps: Pick<BackupDeps, "hypervisor">,
  domain: string,
  image: string,
  signal: AbortSignal,
): Promise<Awaited<ReturnType<typeof imageInfo>>> {
  try {
    return await imageInfo(image, signal);
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
