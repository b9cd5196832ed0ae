import type { GuestAgent, GuestCallOptions, GuestExecResult } from "../../../agent/src/guest/GuestAgent.js";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";

interface FakeGuest {
  agentRunning: boolean;
  frozen: boolean;
  /** Simulated latency of each agent call, ms. */
  latencyMs: number;
}

/** In-memory GuestAgent for unit tests; passes the GuestAgent contract suite. */
export class FakeGuestAgent implements GuestAgent {
  readonly guests = new Map<string, FakeGuest>();
  readonly calls: string[] = [];
  /** Make the next N thaw calls fail (to exercise retries). */
  failThaws = 0;

  addGuest(name: string, g: Partial<FakeGuest> = {}): void {
    this.guests.set(name, { agentRunning: true, frozen: false, latencyMs: 0, ...g });
  }

  private async call(domain: string, what: string, opts: GuestCallOptions): Promise<FakeGuest> {
    this.calls.push(`${what} ${domain}`);
    if (opts.signal.aborted) throw abortError(opts.signal, what);
    const g = this.guests.get(domain);
    if (!g) throw new CairnError("not-found", `domain ${domain} not found`);
    if (!g.agentRunning) {
      await new Promise((r) => setTimeout(r, opts.timeoutMs));
      throw new CairnError(
        "timeout",
        `guest agent of ${domain} did not answer ${what} within ${opts.timeoutMs} ms`,
      );
    }
    if (g.latencyMs > opts.timeoutMs) {
      await new Promise((r) => setTimeout(r, opts.timeoutMs));
      throw new CairnError(
        "timeout",
        `guest agent of ${domain} did not answer ${what} within ${opts.timeoutMs} ms`,
      );
    }
    if (g.latencyMs) await new Promise((r) => setTimeout(r, g.latencyMs));
    return g;
  }

  async ping(domain: string, opts: GuestCallOptions): Promise<boolean> {
    try {
      await this.call(domain, "ping", opts);
      return true;
    } catch (err) {
      if (err instanceof CairnError && (err.code === "aborted" || err.code === "not-found")) throw err;
      return false;
    }
  }

  async freeze(domain: string, opts: GuestCallOptions): Promise<number> {
    const g = await this.call(domain, "freeze", opts);
    if (g.frozen) throw new CairnError("failed-precondition", `${domain} is already frozen`);
    g.frozen = true;
    return 1;
  }

  async thaw(domain: string, opts: GuestCallOptions): Promise<number> {
    const g = await this.call(domain, "thaw", opts);
    if (this.failThaws > 0) {
      this.failThaws--;
      throw new CairnError("unavailable", "simulated thaw failure");
    }
    const was = g.frozen;
    g.frozen = false;
    return was ? 1 : 0;
  }

  async status(domain: string, opts: GuestCallOptions): Promise<"frozen" | "thawed"> {
    return (await this.call(domain, "status", opts)).frozen ? "frozen" : "thawed";
  }

  async exec(domain: string, argv: readonly string[], opts: GuestCallOptions): Promise<GuestExecResult> {
    const g = await this.call(domain, "exec", opts);
    if (g.frozen)
      throw new CairnError("failed-precondition", "guest-exec is refused while the guest is frozen");
    if (argv[0] === "/bin/echo") return { exitCode: 0, stdout: `${argv.slice(1).join(" ")}\n`, stderr: "" };
    if (argv[0] === "/bin/false") return { exitCode: 1, stdout: "", stderr: "" };
    return { exitCode: 127, stdout: "", stderr: `${argv[0]}: not found\n` };
  }
}
