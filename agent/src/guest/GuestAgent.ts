/**
 * Port: qemu-guest-agent inside a domain.
 *
 * Contract:
 * - Every call has an explicit deadline (`timeoutMs`) and an AbortSignal; a guest that does not answer
 *   within it gives CairnError("timeout"), never a hang.
 * - `freeze` returns the number of filesystems frozen; `thaw` the number thawed (0 when none were frozen:
 *   thawing a thawed guest is not an error, so cleanup can always call it).
 * - No guest agent channel, or an agent that is not running: CairnError("unavailable").
 * - While a guest is frozen, qemu-ga refuses guest-exec: callers run hooks before freezing or after thawing.
 */
export interface GuestAgent {
  /** True when the agent answers within timeoutMs; never throws for a silent agent. */
  ping(domain: string, opts: GuestCallOptions): Promise<boolean>;
  freeze(domain: string, opts: GuestCallOptions & { mountpoints?: readonly string[] }): Promise<number>;
  thaw(domain: string, opts: GuestCallOptions): Promise<number>;
  status(domain: string, opts: GuestCallOptions): Promise<"frozen" | "thawed">;
  /** Runs argv in the guest and waits for it. */
  exec(domain: string, argv: readonly string[], opts: GuestCallOptions): Promise<GuestExecResult>;
}

export interface GuestCallOptions {
  signal: AbortSignal;
  timeoutMs: number;
}

export interface GuestExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}
