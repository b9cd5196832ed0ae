import { CairnError } from "../../../shared/src/errors/CairnError.js";

/** Maps virsh's error text to Cairn's taxonomy; the message keeps virsh's own words. */
export function virshFailure(
  args: readonly string[],
  stderr: string,
  uri: string,
  cause?: unknown,
): CairnError {
  const msg = stderr.replace(/^error:\s*/gm, "").trim();
  if (/cannot acquire state change lock/i.test(msg)) {
    return new CairnError("timeout", `virsh ${args[0]}: the domain is busy with another job: ${msg}`, {
      cause,
    });
  }
  const notFound =
    /failed to get domain|Domain not found|checkpoint not found|no domain with matching|does not exist/i.test(
      msg,
    );
  const unreachable = /failed to connect|Failed to connect socket|No such file or directory.*sock/i.test(msg);
  return new CairnError(
    notFound ? "not-found" : unreachable ? "unavailable" : "failed-precondition",
    `virsh ${args.join(" ")} failed: ${msg}`,
    { cause, ...(unreachable ? { hint: `is libvirtd running and reachable at ${uri}?` } : {}) },
  );
}
