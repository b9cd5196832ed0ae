import { CairnError, type CairnErrorCode } from "../errors/CairnError.js";
import { ERRNO_NAMES } from "./constants.js";

/** Maps an errno an NBD server returned for a command onto Cairn's error taxonomy. */
export function nbdErrno(error: number, what: string, message?: string, offset?: number): CairnError {
  const name = ERRNO_NAMES[error] ?? `errno ${error}`;
  const code: CairnErrorCode =
    name === "EPERM"
      ? "permission-denied"
      : name === "EINVAL" || name === "EOVERFLOW"
        ? "invalid-argument"
        : name === "ENOSPC"
          ? "resource-exhausted"
          : name === "ENOTSUP"
            ? "unimplemented"
            : name === "ESHUTDOWN"
              ? "unavailable"
              : "internal";
  return new CairnError(code, `NBD ${what} failed: ${name}${message ? ` (${message})` : ""}`, {
    details: { errno: error, errnoName: name, ...(offset === undefined ? {} : { offset }) },
    ...(name === "EIO"
      ? { hint: "the NBD server reported an I/O error on its disk; check the server's logs" }
      : {}),
  });
}
