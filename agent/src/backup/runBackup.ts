import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { findDomain, type LiveBackupResult, runLiveBackup } from "../live/runLiveBackup.js";
import { runOfflineBackup } from "../offline/runOfflineBackup.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "./BackupRequest.js";

/**
 * Backs up a domain whatever its state: running or paused through libvirt's pull backup, shut off
 * through qemu-nbd and persistent bitmaps. Both continue the same checkpoint chain.
 */
export async function runBackup(
  deps: BackupDeps,
  config: BackupConfig,
  req: BackupRequest,
): Promise<LiveBackupResult & { offline: boolean }> {
  const domain = await findDomain(deps.hypervisor, req.domain, req.signal);
  if (domain.state === "running" || domain.state === "paused") {
    return { ...(await runLiveBackup(deps, config, req, domain)), offline: false };
  }
  if (domain.state === "shutoff") {
    const r = await runOfflineBackup(deps, config, req, domain);
    return { ...r, freezeWindowMs: undefined, prunedCheckpoints: [], offline: true };
  }
  throw new CairnError(
    "failed-precondition",
    `domain ${domain.name} is ${domain.state}: neither running nor shut off`,
    {
      hint: "wait until it is running or shut off, then retry",
    },
  );
}
