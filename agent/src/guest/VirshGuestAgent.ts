import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import { spawnRunner, type VirshRunner } from "../hypervisor/runVirsh.js";
import type { GuestAgent, GuestCallOptions, GuestExecResult } from "./GuestAgent.js";

/** GuestAgent over `virsh qemu-agent-command` (libvirt owns the agent channel). */
export class VirshGuestAgent implements GuestAgent {
  private readonly runner: VirshRunner;

  constructor(config: { uri: string; runner?: VirshRunner }) {
    this.runner = config.runner ?? spawnRunner(config.uri);
  }

  private async command<T>(
    domain: string,
    execute: string,
    args: unknown,
    opts: GuestCallOptions,
  ): Promise<T> {
    const cmd = JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
    const timeoutS = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
    try {
      const out = await this.runner(["qemu-agent-command", domain, cmd, "--timeout", String(timeoutS)], {
        signal: opts.signal,
        // virsh's own --timeout bounds the agent; this bounds virsh itself.
        timeoutMs: opts.timeoutMs + 10_000,
      });
      return (JSON.parse(out) as { return: T }).return;
    } catch (err) {
      if (!isCairnError(err) || err.code === "aborted" || err.code === "not-found") throw err;
      const msg = err.message;
      if (/not responding|timed out|Timed out/i.test(msg)) {
        throw new CairnError(
          "timeout",
          `guest agent of ${domain} did not answer ${execute} within ${opts.timeoutMs} ms`,
          {
            cause: err,
          },
        );
      }
      if (
        /not connected|not configured|agent is not|Guest agent is not responding|unable to execute QEMU agent/i.test(
          msg,
        )
      ) {
        throw new CairnError("unavailable", `guest agent of ${domain} is not available: ${msg}`, {
          cause: err,
          hint: "install and start qemu-guest-agent in the guest, with an org.qemu.guest_agent.0 channel",
        });
      }
      throw err;
    }
  }

  async ping(domain: string, opts: GuestCallOptions): Promise<boolean> {
    try {
      await this.command(domain, "guest-ping", undefined, opts);
      return true;
    } catch (err) {
      if (isCairnError(err, "aborted") || isCairnError(err, "not-found")) throw err;
      return false;
    }
  }

  freeze(domain: string, opts: GuestCallOptions & { mountpoints?: readonly string[] }): Promise<number> {
    return opts.mountpoints?.length
      ? this.command<number>(domain, "guest-fsfreeze-freeze-list", { mountpoints: opts.mountpoints }, opts)
      : this.command<number>(domain, "guest-fsfreeze-freeze", undefined, opts);
  }

  thaw(domain: string, opts: GuestCallOptions): Promise<number> {
    return this.command<number>(domain, "guest-fsfreeze-thaw", undefined, opts);
  }

  status(domain: string, opts: GuestCallOptions): Promise<"frozen" | "thawed"> {
    return this.command<"frozen" | "thawed">(domain, "guest-fsfreeze-status", undefined, opts);
  }

  async exec(domain: string, argv: readonly string[], opts: GuestCallOptions): Promise<GuestExecResult> {
    const [path, ...arg] = argv;
    const deadline = Date.now() + opts.timeoutMs;
    const left = () => Math.max(1000, deadline - Date.now());
    const { pid } = await this.command<{ pid: number }>(
      domain,
      "guest-exec",
      { path, arg, "capture-output": true },
      { signal: opts.signal, timeoutMs: left() },
    );
    for (;;) {
      const st = await this.command<{
        exited: boolean;
        exitcode?: number;
        signal?: number;
        "out-data"?: string;
        "err-data"?: string;
      }>(domain, "guest-exec-status", { pid }, { signal: opts.signal, timeoutMs: left() });
      if (st.exited) {
        return {
          exitCode: st.exitcode ?? (st.signal ? 128 + st.signal : -1),
          stdout: Buffer.from(st["out-data"] ?? "", "base64").toString(),
          stderr: Buffer.from(st["err-data"] ?? "", "base64").toString(),
        };
      }
      if (Date.now() >= deadline) {
        throw new CairnError(
          "timeout",
          `guest command ${argv.join(" ")} in ${domain} ran longer than ${opts.timeoutMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
