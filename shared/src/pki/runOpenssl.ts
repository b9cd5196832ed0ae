import { execa } from "execa";
import { CairnError } from "../errors/CairnError.js";

/** Runs openssl with an argument array; failures name the subcommand and openssl's own words. */
export async function runOpenssl(
  args: readonly string[],
  signal: AbortSignal,
  input?: string,
): Promise<string> {
  const r = await execa("openssl", args, {
    cancelSignal: signal,
    reject: false,
    ...(input !== undefined ? { input } : { stdin: "ignore" }),
  });
  if (signal.aborted) throw new CairnError("aborted", `openssl ${args[0]} was aborted`);
  if (r.exitCode !== 0) {
    const why = (r.stderr || r.stdout || "").toString().trim().split("\n").slice(-3).join(" | ");
    throw new CairnError("internal", `openssl ${args[0]} failed (exit ${r.exitCode}): ${why}`, {
      hint: "is openssl installed (Debian package openssl)?",
    });
  }
  return r.stdout.toString();
}
