import { execa } from "execa";
import { CairnError } from "../../../shared/src/errors/CairnError.js";

export interface VirshOptions {
  uri: string;
  signal: AbortSignal;
  /** Explicit deadline for one virsh call. */
  timeoutMs?: number;
}

/**
 * Runs one virsh command with an argument array (never a shell string) and returns stdout.
 * A failure names the command and carries virsh's own message, which is usually the useful part.
 */
export async function runVirsh(args: readonly string[], opts: VirshOptions): Promise<string> {
  const timeout = opts.timeoutMs ?? 60_000;
  const r = await execa("virsh", ["-q", "-c", opts.uri, ...args], {
    cancelSignal: opts.signal,
    timeout,
    reject: false,
    stripFinalNewline: true,
    env: { LC_ALL: "C" },
  });
  if (r.isCanceled) throw new CairnError("aborted", `virsh ${args[0]} was aborted`, { cause: r });
  if (r.timedOut)
    throw new CairnError("timeout", `virsh ${args[0]} did not finish within ${timeout} ms`, {
      hint: "check that libvirtd is responsive (virsh version)",
    });
  if (r.failed) {
    const msg = String(r.stderr || r.stdout || r.message || "")
      .replace(/^error:\s*/gm, "")
      .trim();
    const notFound =
      /failed to get domain|Domain not found|checkpoint not found|no domain with matching|does not exist/i.test(
        msg,
      );
    const unreachable = /failed to connect|Failed to connect socket|No such file or directory.*sock/i.test(
      msg,
    );
    if (/cannot acquire state change lock/i.test(msg)) {
      throw new CairnError("timeout", `virsh ${args[0]}: the domain is busy with another job: ${msg}`, {
        cause: r,
      });
    }
    throw new CairnError(
      notFound ? "not-found" : unreachable ? "unavailable" : "failed-precondition",
      `virsh ${args.join(" ")} failed: ${msg}`,
      {
        cause: r,
        ...(unreachable ? { hint: `is libvirtd running and reachable at ${opts.uri}?` } : {}),
      },
    );
  }
  return r.stdout;
}
