import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import { type LiveBackupResult, runLiveBackup } from "../live/runLiveBackup.js";
import { runOfflineBackup } from "../offline/runOfflineBackup.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "./BackupRequest.js";

/** Why a job did not start and should run later, maybe on another host (CairnError details.deferred). */
export type DeferredCause = "migrating" | "moved";

/** The cause when `err` says the job was deferred, not failed. */
export function deferredCause(err: unknown): DeferredCause | undefined {
  const d = isCairnError(err) ? err.details?.["deferred"] : undefined;
  return d === "migrating" || d === "moved" ? d : undefined;
}

/**
 * Backs up a domain whatever its state: running or paused through libvirt's pull backup, shut off
 * through qemu-nbd and persistent bitmaps. Both continue the same checkpoint chain. A domain that is
 * not here, or that a migration holds, is deferred (CairnError with details.deferred) before
 * anything is changed. The result names the checkpoint made, with libvirt's XML for the ledger.
 */
export async function runBackup(
  deps: BackupDeps,
  config: BackupConfig,
  req: BackupRequest,
): Promise<LiveBackupResult & { offline: boolean; checkpoint: CheckpointInfo | undefined }> {
  const { hypervisor, log } = deps;
  const domain = await hypervisor.domain(req.domain, req.signal);
  if (!domain) {
    throw new CairnError("not-found", `no domain ${req.domain} on this host`, {
      hint: "it may have moved to another host; the coordinator runs the job where it is now",
      details: { deferred: "moved" },
    });
  }
  if ((await hypervisor.activeJob(domain.name, req.signal)) === "migration") {
    throw new CairnError("failed-precondition", `domain ${domain.name} is being migrated`, {
      hint: "the backup runs once the migration has ended, on the host the domain is then on",
      details: { deferred: "migrating" },
    });
  }
  const withCheckpoint = async (r: LiveBackupResult, offline: boolean) => {
    // Sealed already: a lost lookup costs the ledger this checkpoint's XML, not the backup.
    const checkpoint = r.plan.newCheckpoint
      ? await hypervisor.checkpoint(domain.name, r.plan.newCheckpoint, req.signal).catch((err: unknown) => {
          log.warn({ err, domain: domain.name, checkpoint: r.plan.newCheckpoint }, "checkpoint XML not read");
          return undefined;
        })
      : undefined;
    return { ...r, offline, checkpoint };
  };
  if (domain.state === "running" || domain.state === "paused") {
    return withCheckpoint(await runLiveBackup(deps, config, req, domain), false);
  }
  if (domain.state === "shutoff") {
    const r = await runOfflineBackup(deps, config, req, domain);
    return withCheckpoint({ ...r, freezeWindowMs: undefined, prunedCheckpoints: [] }, true);
  }
  throw new CairnError(
    "failed-precondition",
    `domain ${domain.name} is ${domain.state}: neither running nor shut off`,
    {
      hint: "wait until it is running or shut off, then retry",
    },
  );
}
