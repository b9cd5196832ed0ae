import { lstatSync } from "node:fs";
import { destinationStateOf } from "../../shared/src/repository/restore/destinationState.js";
import { planRestoreTarget } from "../../shared/src/repository/restore/planRestoreTarget.js";
import { restoreDisk } from "../../shared/src/repository/restore/restoreDisk.js";
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
 * asked anything) and returns the restore: one disk of a snapshot written to the destination
 * (restoreDisk decides again when it opens it, without a race).
 */
export function prepareDiskRestore(destination: string, o: RestoreDiskOptions) {
  const force = !!o.force;
  planRestoreTarget(
    destination,
    destinationStateOf(lstatSync(destination, { throwIfNoEntry: false })),
    o.format,
    force,
    o.destinationFlag,
  );
  return (location: string, snapshot: string, disk: string): Promise<void> =>
    withCliRepository(location, o.passphraseFile, async (repository) => {
      // Ctrl-C aborts instead of killing: a partly written new file is then removed.
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once("SIGINT", stop).once("SIGTERM", stop);
      try {
        const reader = await repository.openDisk(snapshot, disk, ac.signal);
        await restoreDisk(reader, destination, {
          format: o.format,
          force,
          destinationFlag: o.destinationFlag,
          signal: ac.signal,
        });
      } finally {
        process.off("SIGINT", stop).off("SIGTERM", stop);
      }
    });
}
