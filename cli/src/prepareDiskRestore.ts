import { existsSync } from "node:fs";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { withCliRepository } from "./withCliRepository.js";

export interface RestoreDiskOptions {
  format: string;
  force?: boolean | undefined;
  passphraseFile?: string | undefined;
  /** The command's flag for the destination, for messages ("--out", "--to"). */
  destinationFlag: string;
}

/**
 * Checks a disk restore's destination and format at once (before a repository or coordinator is
 * asked anything) and returns the restore: one disk of a snapshot written to the destination file.
 */
export function prepareDiskRestore(destination: string, o: RestoreDiskOptions) {
  const format = o.format;
  if (format !== "raw" && format !== "qcow2")
    throw new CairnError("invalid-argument", `--format ${format} is not raw or qcow2`);
  if (existsSync(destination) && !o.force)
    throw new CairnError("already-exists", `${destination} exists`, {
      hint: `choose another ${o.destinationFlag}, or pass --force to overwrite it`,
    });
  return (location: string, snapshot: string, disk: string): Promise<void> =>
    withCliRepository(location, o.passphraseFile, async (repository) => {
      const reader = await repository.openDisk(snapshot, disk);
      await reader.materialize(destination, { format });
    });
}
