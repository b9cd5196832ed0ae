import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";

/**
 * The domain a backup job names, or a deferral (CairnError with details.deferred) before anything
 * is changed: not on this host ("moved"), or held by a migration ("migrating"). The job then runs
 * later where the domain is.
 */
export async function findBackupDomain(
  hypervisor: Hypervisor,
  nameOrUuid: string,
  signal: AbortSignal,
): Promise<DomainInfo> {
  const domain = await hypervisor.domain(nameOrUuid, signal);
  if (!domain) {
    throw new CairnError("not-found", `no domain ${nameOrUuid} on this host`, {
      hint: "it may have moved to another host; the coordinator runs the job where it is now",
      details: { deferred: "moved" },
    });
  }
  if ((await hypervisor.activeJob(domain.name, signal)) === "migration") {
    throw new CairnError("failed-precondition", `domain ${domain.name} is being migrated`, {
      hint: "the backup runs once the migration has ended, on the host the domain is then on",
      details: { deferred: "migrating" },
    });
  }
  return domain;
}
