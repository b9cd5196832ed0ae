import { CairnError } from "../../../shared/src/errors/CairnError.js";

/** What qemu-img and qemu-nbd print when another process holds the image's lock. */
const LOCK_FAILURE = /Failed to get .*lock|Is another process using the image/i;

/**
 * The error for an image another process holds open, or undefined when `stderr` says something
 * else. QEMU's image locks are the offline path's last guard against an image a QEMU elsewhere
 * (the VM migrated, its inactive definition left here) is writing; `details.deferred` tells the
 * caller the backup belongs to wherever the VM runs now.
 */
export function imageInUseError(image: string, stderr: string): CairnError | undefined {
  if (!LOCK_FAILURE.test(stderr)) return undefined;
  return new CairnError(
    "failed-precondition",
    `${image} is in use by another QEMU (the VM may run on another host)`,
    {
      hint: "back the VM up where it runs; this host's definition of it is stale",
      details: { deferred: "moved", image, stderr: stderr.trim() },
    },
  );
}
