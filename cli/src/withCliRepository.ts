import type { AgentConfig } from "../../agent/src/config/AgentConfig.js";
import { agentRepositorySettings } from "../../agent/src/config/agentRepositorySettings.js";
import { readPassphrase } from "../../shared/src/cli/runCli.js";
import type { Repository } from "../../shared/src/repository/Repository.js";
import { openRepository } from "../../shared/src/repositoryLocation/openRepository.js";

/**
 * Opens a repository named on the command line (passphrase from --passphrase-file or
 * CAIRN_PASSPHRASE) for one command, and closes it however the command ends. With an agent config,
 * its chunk workers and local reserve apply, as the agent daemon on this host would open it.
 */
export async function withCliRepository<T>(
  location: string,
  passphraseFile: string | undefined,
  use: (repository: Repository) => Promise<T>,
  agentConfig?: Pick<AgentConfig, "localRepositoryReserveBytes" | "chunkWorkers">,
): Promise<T> {
  const passphrase = await readPassphrase(passphraseFile);
  const settings = agentConfig ? agentRepositorySettings(agentConfig, passphrase) : { passphrase };
  const repository = await openRepository(location, settings, AbortSignal.timeout(120_000));
  try {
    return await use(repository);
  } finally {
    await repository.close();
  }
}
