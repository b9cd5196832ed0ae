import { readPassphrase } from "../../shared/src/cli/runCli.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";

/**
 * Opens a repository named on the command line (passphrase from --passphrase-file or
 * CAIRN_PASSPHRASE) for one command, and closes it however the command ends.
 */
export async function withCliRepository<T>(
  location: string,
  passphraseFile: string | undefined,
  use: (repository: Repository) => Promise<T>,
): Promise<T> {
  const passphrase = await readPassphrase(passphraseFile);
  const repository = await Repository.open(openRepositoryStore(location), passphrase ? { passphrase } : {});
  try {
    return await use(repository);
  } finally {
    await repository.close();
  }
}
