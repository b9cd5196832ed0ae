import { CairnError } from "../../errors/CairnError.js";

/** Maps a filesystem error on a restore's destination to Cairn's vocabulary, naming the destination. */
export function restoreIoError(e: unknown, path: string, what: string): CairnError {
  if (e instanceof CairnError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const msg = `${what} ${path} failed`;
  switch (code) {
    case "EEXIST":
      return new CairnError("already-exists", `${path} exists`, {
        cause: e,
        hint: "it appeared while the restore started; choose another destination, or pass --force",
      });
    case "ELOOP":
      return new CairnError("invalid-argument", `${path} is a symbolic link; a restore never follows one`, {
        cause: e,
      });
    case "ENOENT":
    case "ENOTDIR":
      return new CairnError("not-found", `${msg}: its directory does not exist`, { cause: e });
    case "EBUSY":
      return new CairnError("failed-precondition", `${msg}: the device is in use (mounted or held open)`, {
        cause: e,
        hint: "unmount it or stop what holds it, then retry",
      });
    case "ENOSPC":
    case "EDQUOT":
      return new CairnError("resource-exhausted", `${msg}: no space left`, { cause: e });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new CairnError("permission-denied", `${msg}: ${code}`, { cause: e });
    case "EIO":
      return new CairnError("unavailable", `${msg}: I/O error`, { cause: e });
    default:
      return new CairnError("internal", `${msg}: ${(e as Error | undefined)?.message ?? String(e)}`, {
        cause: e,
      });
  }
}
