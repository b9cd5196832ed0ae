import { CairnError } from "../../errors/CairnError.js";

/** Maps a Node filesystem error to the repository's error taxonomy, naming repository and key. */
export function fsError(e: unknown, location: string, what: string): CairnError {
  if (e instanceof CairnError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const msg = `${what} in repository ${location} failed`;
  switch (code) {
    case "ENOENT":
      return new CairnError("not-found", `${what}: not found in repository ${location}`, { cause: e });
    case "ENOSPC":
    case "EDQUOT":
      return new CairnError("resource-exhausted", `${msg}: no space left on the repository's filesystem`, {
        cause: e,
        hint: "free space on the repository volume (prune and gc, or grow it), then retry the backup",
      });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new CairnError("permission-denied", `${msg}: ${code}`, {
        cause: e,
        hint: "check that the repository directory is writable by the Cairn agent",
      });
    case "EIO":
      return new CairnError("unavailable", `${msg}: I/O error`, { cause: e });
    default:
      return new CairnError("internal", `${msg}: ${(e as Error | undefined)?.message ?? String(e)}`, {
        cause: e,
      });
  }
}
