import { execa } from "execa";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { virshFailure } from "./virshFailure.js";

export interface VirshOptions {
  uri: string;
  signal: AbortSignal;
  /** Explicit deadline for one virsh call. */
  timeoutMs?: number;
}

/** How adapters run one virsh command: a fresh process (runVirsh) or a pooled session. */
export type VirshRunner = (
  args: readonly string[],
  opts: { signal: AbortSignal; timeoutMs: number },
) => Promise<string>;

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
  if (r.timedOut) {
    throw new CairnError("timeout", `virsh ${args[0]} did not finish within ${timeout} ms`, {
      hint: "check that libvirtd is responsive (virsh version)",
    });
  }
  if (r.failed) throw virshFailure(args, String(r.stderr || r.stdout || r.message || ""), opts.uri, r);
  return r.stdout;
}

export function spawnRunner(uri: string): VirshRunner {
  return (args, o) => runVirsh(args, { uri, signal: o.signal, timeoutMs: o.timeoutMs });
}
