import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { BackupDeps } from "../backup/BackupRequest.js";

/** Deletes a checkpoint; if its bitmaps are broken (after a crash), drops the metadata only. */
export async function deleteCheckpointSafely(
  deps: Pick<BackupDeps, "hypervisor" | "log">,
  domain: string,
  name: string,
  signal: AbortSignal,
): Promise<void> {
  try {
    await deps.hypervisor.deleteCheckpoint(domain, name, { metadataOnly: false }, signal);
  } catch (err) {
    if (isCairnError(err, "not-found")) return;
    deps.log.warn(
      { domain, checkpoint: name, err: (err as Error).message },
      "checkpoint delete failed; dropping its metadata",
    );
    await deps.hypervisor
      .deleteCheckpoint(domain, name, { metadataOnly: true }, signal)
      .catch((e) => deps.log.error({ domain, checkpoint: name, err: e }, "could not remove checkpoint"));
  }
}
