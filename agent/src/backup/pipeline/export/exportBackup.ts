import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import type { DomainInfo } from "../../../hypervisor/DomainInfo.js";
import type { BackupConfig, BackupDeps, BackupRequest } from "../../BackupRequest.js";
import type { ExportOptions } from "./ExportOptions.js";
import type { ExportSession } from "./ExportSession.js";
import { exportLive } from "./exportLive.js";
import { exportOffline } from "./exportOffline.js";

/**
 * The export stage whatever the domain's state: running or paused through libvirt's pull backup,
 * shut off through qemu-nbd and persistent bitmaps. Both continue the same checkpoint chain and
 * describe their export the same way (ExportDescriptor).
 */
export function exportBackup(
  deps: Omit<BackupDeps, "repository">,
  config: BackupConfig,
  req: BackupRequest,
  domain: DomainInfo,
  opts: ExportOptions,
): Promise<ExportSession> {
  if (domain.state === "running" || domain.state === "paused")
    return exportLive(deps, config, req, domain, opts);
  if (domain.state === "shutoff") return exportOffline(deps, config, req, domain, opts);
  throw new CairnError(
    "failed-precondition",
    `domain ${domain.name} is ${domain.state}: neither running nor shut off`,
    { hint: "wait until it is running or shut off, then retry" },
  );
}
