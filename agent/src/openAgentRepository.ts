import { BandwidthLimitedObjectStore } from "../../shared/src/repository/decorators/BandwidthLimitedObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";
import type { AgentConfig } from "./config/AgentConfig.js";

export interface AgentRepositorySettings {
  /** From the agent config: free space backups leave on a local repository (undefined: default). */
  localReserveBytes?: number | undefined;
  passphrase?: string | undefined;
}

/** Settings from the agent's config file that apply to every repository the agent opens. */
export function agentRepositorySettings(
  config: Pick<AgentConfig, "localRepositoryReserveBytes">,
  passphrase: string | undefined,
): AgentRepositorySettings {
  return { localReserveBytes: config.localRepositoryReserveBytes, passphrase };
}

/**
 * Opens a repository a job names, as the agent does: the location's store with the agent's local
 * settings, behind the job's bandwidth limit when it has one.
 */
export function openAgentRepository(
  location: string,
  settings: AgentRepositorySettings,
  signal: AbortSignal,
  opts?: { bandwidthBytesPerSecond?: number },
): Promise<Repository> {
  const reserve = settings.localReserveBytes;
  const store = openRepositoryStore(
    location,
    process.env,
    reserve === undefined ? {} : { reserveBytes: reserve },
  );
  const bw = opts?.bandwidthBytesPerSecond ?? 0;
  return Repository.open(bw > 0 ? new BandwidthLimitedObjectStore(store, bw) : store, {
    ...(settings.passphrase ? { passphrase: settings.passphrase } : {}),
    signal,
  });
}
