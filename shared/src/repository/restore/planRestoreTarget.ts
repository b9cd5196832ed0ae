import { CairnError } from "../../errors/CairnError.js";

export type RestoreFormat = "raw" | "qcow2";

/** What is at the destination path now, from lstat (symlinks are not followed). */
export type DestinationState = "missing" | "file" | "block-device" | "symlink" | "other";

export interface RestoreTargetPlan {
  /**
   * new-file: created 0600 with O_EXCL|O_NOFOLLOW, removed if the restore fails;
   * replace-file: written to a new 0600 file beside it and renamed over it at the end, so a failed
   * restore leaves the old file as it was; block-device: written in place, never truncated.
   */
  kind: "new-file" | "replace-file" | "block-device";
  format: RestoreFormat;
}

/**
 * Decides how a disk restore writes `destination`. Pure: the caller lstat()s and opens; opening
 * again refuses anything that changed in between (O_EXCL, O_NOFOLLOW). Anything already there
 * needs `force`; symlinks and other non-regular files are refused even with it (a symlink's
 * target is someone else's file).
 */
export function planRestoreTarget(
  destination: string,
  state: DestinationState,
  format: string,
  force: boolean,
  flag = "the destination",
): RestoreTargetPlan {
  if (format !== "raw" && format !== "qcow2")
    throw new CairnError("invalid-argument", `--format ${format} is not raw or qcow2`);
  switch (state) {
    case "missing":
      return { kind: "new-file", format };
    case "symlink":
      throw new CairnError(
        "invalid-argument",
        `${destination} is a symbolic link; a restore never follows one`,
        {
          hint: `name the real file or device as ${flag}`,
        },
      );
    case "other":
      throw new CairnError(
        "invalid-argument",
        `${destination} is neither a regular file nor a block device; a restore writes only to those`,
        { hint: `choose another ${flag}` },
      );
  }
  if (!force)
    throw new CairnError("already-exists", `${destination} exists`, {
      hint: `choose another ${flag}, or pass --force to overwrite it`,
    });
  if (state === "file") return { kind: "replace-file", format };
  if (format !== "raw")
    throw new CairnError(
      "invalid-argument",
      `${destination} is a block device; only --format raw is written to one`,
      {
        hint: "pass --format raw (the device then holds the disk's bytes as they are)",
      },
    );
  return { kind: "block-device", format };
}
