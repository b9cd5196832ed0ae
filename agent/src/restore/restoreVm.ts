import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { RestoreVmResult } from "../../../shared/src/gen/cairn/v1/common.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { RestorePointReader } from "../../../shared/src/repository/RestorePointReader.js";
import { restoreDisk } from "../../../shared/src/repository/restore/restoreDisk.js";
import { UndoStack } from "../backup/pipeline/undo/UndoStack.js";
import { type ConfigFileOwners, placeConfigFiles } from "./placeConfigFiles.js";
import { planVmRestore, type VmRestoreRequest } from "./planVmRestore.js";
import type { RestoreHost } from "./RestoreHost.js";
import type { RestoreProgress } from "./RestoreProgress.js";

export interface RestoreVmConfig {
  /** libvirt's nvram_dir and swtpm state root on this host. */
  nvramDir: string;
  swtpmStateDir: string;
  owners: ConfigFileOwners;
}

export interface RestoreVmContext {
  repository: Repository;
  host: RestoreHost;
  config: RestoreVmConfig;
  log: Logger;
  progress: RestoreProgress;
  signal: AbortSignal;
}

/**
 * Restores a whole VM from a snapshot (docs/restore.md §3): plans it (every refusal comes before a
 * write), puts NVRAM and TPM state in place, writes each disk with the disk engine (to a file, a
 * pool volume, or over the original's disks in place), defines the new domain and starts it when
 * asked. Everything it created is pushed on one undo stack and taken back if a later step fails or
 * the job is aborted; in place, what was overwritten stays overwritten (the error says so).
 */
export async function restoreVm(
  ctx: RestoreVmContext,
  snapshotId: string,
  request: VmRestoreRequest & { start: boolean },
): Promise<RestoreVmResult> {
  const { repository, host, progress, signal } = ctx;
  progress.phase("plan");
  const manifest = await repository.showSnapshot(snapshotId, signal);
  const readers = new Map<string, RestorePointReader>();
  for (const d of manifest.disks)
    readers.set(d.target, await repository.openDisk(snapshotId, d.target, signal));
  const plan = await planVmRestore(
    {
      manifest,
      request,
      disks: [...readers.values()].map((r) => ({
        target: r.disk.target,
        virtualSize: r.virtualSize,
        dataBytes: r
          .allocation()
          .filter((run) => !run.zero)
          .reduce((s, run) => s + run.length, 0),
      })),
      nvramDir: ctx.config.nvramDir,
      swtpmStateDir: ctx.config.swtpmStateDir,
      newUuid: randomUUID(),
    },
    host,
    signal,
  );
  progress.setTotal(plan.disks.reduce((s, d) => s + d.virtualSize, 0));
  ctx.log.info(
    {
      snapshotId,
      name: plan.name,
      uuid: plan.uuid,
      inPlace: plan.inPlace,
      disks: plan.disks.map((d) => d.path),
      dropped: plan.dropped,
      emptied: plan.emptied,
    },
    "restoring a VM",
  );

  const undo = new UndoStack(ctx.log, { snapshotId, domain: plan.name });
  const written: string[] = [];
  try {
    progress.phase("config");
    if (plan.inPlace) {
      // Before any disk is written: a chain must never describe disks that were put back, even
      // when the restore stops halfway (the coordinator's ledger marks it broken on success).
      const forgotten = await host.forgetCheckpoints(plan.uuid, signal);
      if (forgotten.length)
        ctx.log.info({ domain: plan.name, checkpoints: forgotten }, "checkpoints forgotten");
    }
    await placeConfigFiles(plan, ctx.config.owners, undo, signal);
    const disks: RestoreVmResult["disks"] = [];
    for (const d of plan.disks) {
      let path = d.path;
      if (d.volume) {
        const { pool, name } = d.volume;
        path = await host.createVolume(pool, name, d.virtualSize, d.format, signal);
        undo.push(`delete volume ${pool}/${name}`, (s) => host.deleteVolume(pool, name, s));
      }
      const r = await restoreDisk(readers.get(d.target)!, path, {
        format: d.format,
        force: d.overwrite,
        signal,
        destinationFlag: `disk ${d.target}'s destination`,
        onProgress: (done) => progress.disk(done),
      });
      if (!d.overwrite) undo.push(`remove ${path}`, () => rm(path, { force: true }));
      written.push(d.target);
      progress.diskDone(d.virtualSize);
      disks.push({
        target: d.target,
        path,
        format: d.format,
        bytesWritten: BigInt(r.dataBytes + r.zeroBytesWritten),
        pool: d.volume?.pool ?? "",
        volume: d.volume?.name ?? "",
      });
    }
    if (plan.xml) {
      progress.phase("define");
      await host.define(plan.xml, signal);
      undo.push(`undefine ${plan.name}`, (s) => host.undefine(plan.uuid, s));
    }
    if (request.start) {
      progress.phase("start");
      await host.start(plan.uuid, signal);
    }
    undo.keep();
    return {
      domainUuid: plan.uuid,
      domainName: plan.name,
      disks,
      started: request.start,
      inPlace: plan.inPlace,
    };
  } catch (e) {
    await undo.runAll();
    if (!plan.inPlace || written.length === 0) throw e;
    throw new CairnError(
      isCairnError(e) ? e.code : "internal",
      `in-place restore of ${plan.name} stopped after disks ${written.join(", ")} were overwritten`,
      {
        cause: e,
        hint: `${isCairnError(e) ? e.userMessage : String(e)}; restore it again before starting it`,
      },
    );
  }
}
