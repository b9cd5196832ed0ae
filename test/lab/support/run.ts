import { execa, type Options } from "execa";

export class LabError extends Error {
  override name = "LabError";
}

export interface RunOptions {
  timeoutMs?: number;
  cwd?: string;
  input?: string;
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Return the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with an argument array and an explicit deadline; failures name the command. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeout = opts.timeoutMs ?? 60_000;
  const options: Options = {
    timeout,
    reject: false,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    env: { LC_ALL: "C", ...opts.env },
  };
  const r = await execa(cmd, args, options);
  const res = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? "") };
  if (r.timedOut) throw new LabError(`${cmd} ${args.join(" ")} did not finish within ${timeout} ms`);
  if (r.failed && !opts.allowFailure) {
    const tail = (res.stderr || res.stdout).trim().split("\n").slice(-15).join("\n");
    throw new LabError(`${cmd} ${args.join(" ")} failed (exit ${res.exitCode}): ${tail || r.message}`);
  }
  return res;
}

/** Polls `probe` every `intervalMs` until it returns a value, or fails with `describe()` at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; describe?: () => Promise<string> },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) {
      const extra = opts.describe ? await opts.describe().catch((e) => `(no details: ${e})`) : "";
      throw new LabError(
        `timed out after ${opts.timeoutMs} ms waiting for ${what}${extra ? `\n${extra}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}
