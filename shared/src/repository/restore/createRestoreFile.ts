import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { openFd } from "../backends/fdIo.js";
import { restoreIoError } from "./restoreIoError.js";

/** The file a restore writes: where, and how it ends up at its destination. */
export interface RestoreFile {
  /** The destination. */
  readonly path: string;
  readonly kind: "new-file" | "replace-file";
  /** Where the bytes go: the destination itself, or (replace-file) a new file beside it. */
  readonly writePath: string;
  /** writePath opened O_WRONLY, owned by the caller (who closes it). */
  readonly fd: number;
  /** Puts the written file at `path` (replace-file: renames it over the old one). */
  publish(): Promise<void>;
  /** Removes what was created (never the file being replaced). */
  remove(): Promise<void>;
}

/**
 * Creates the (empty) file a restore writes, 0600 with O_CREAT|O_EXCL|O_NOFOLLOW, so nothing that
 * appeared at the name since it was inspected is opened or followed. Replacing a file writes a new
 * one beside it (same directory, same filesystem) and renames it over the old one only once
 * complete: a failed restore leaves the old file as it was, and a symlink planted meanwhile is
 * replaced, never followed.
 */
export async function createRestoreFile(
  path: string,
  kind: "new-file" | "replace-file",
): Promise<RestoreFile> {
  const writePath =
    kind === "new-file"
      ? path
      : join(dirname(path), `.${basename(path)}.cairn-restore-${randomBytes(6).toString("hex")}`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fd = await openFd(writePath, flags, 0o600).catch((e: unknown) => {
    throw restoreIoError(e, path, "creating");
  });
  return {
    path,
    kind,
    writePath,
    fd,
    publish: async () => {
      if (writePath === path) return;
      await rename(writePath, path).catch(async (e: unknown) => {
        await rm(writePath, { force: true });
        throw restoreIoError(e, path, "replacing");
      });
    },
    remove: () => rm(writePath, { force: true }),
  };
}
