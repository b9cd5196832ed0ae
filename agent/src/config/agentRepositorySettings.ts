import type { RepositorySettings } from "../../../shared/src/repositoryLocation/openRepository.js";
import type { AgentConfig } from "./AgentConfig.js";

/** Settings from the agent's config file that apply to every repository it opens (daemon and local CLI). */
export function agentRepositorySettings(
  config: Pick<AgentConfig, "localRepositoryReserveBytes" | "chunkWorkers">,
  passphrase: string | undefined,
): RepositorySettings {
  return {
    localReserveBytes: config.localRepositoryReserveBytes,
    chunkWorkers: config.chunkWorkers,
    passphrase,
  };
}
