import { randomBytes, randomInt } from "node:crypto";
import { execa } from "execa";
import { isAlive } from "./libvirtDaemons.js";
import { LabError, type RunOptions, type RunResult, run } from "./run.js";

/** Every lab namespace is named cairn-ns-<creator pid>-<hex>: a sweep finds crashed runs' ones. */
const PREFIX = "cairn-ns-";

/**
 * A network namespace joined to this one by a veth pair: a "remote host" for network tests. The
 * pair gets its own /24 of 10.222.0.0/16: `hostAddress` (.1) on our side, `address` (.2) inside.
 * Nothing in it is reachable from elsewhere and it reaches only us.
 */
export class NetNs {
  private disposed = false;

  private constructor(
    readonly name: string,
    /** Our end of the veth pair (host side). */
    readonly hostIf: string,
    readonly hostAddress: string,
    /** The namespace's own address. */
    readonly address: string,
    /** The namespace's end of the veth pair. */
    readonly nsIf: string,
  ) {}

  static async create(signal: AbortSignal): Promise<NetNs> {
    await NetNs.sweep(signal);
    const tag = randomBytes(3).toString("hex");
    const name = `${PREFIX}${process.pid}-${tag}`;
    // Interface names are at most 15 bytes.
    const hostIf = `cnh${tag}`;
    const nsIf = `cnn${tag}`;
    const subnet = await freeSubnet(signal);
    const ns = new NetNs(name, hostIf, `${subnet}.1`, `${subnet}.2`, nsIf);
    const opts = { signal, timeoutMs: 15_000 };
    try {
      await run("ip", ["netns", "add", name], opts);
      await run("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", name], opts);
      await run("ip", ["addr", "add", `${ns.hostAddress}/24`, "dev", hostIf], opts);
      await run("ip", ["link", "set", hostIf, "up"], opts);
      await ns.run("ip", ["addr", "add", `${ns.address}/24`, "dev", nsIf], opts);
      await ns.run("ip", ["link", "set", nsIf, "up"], opts);
      await ns.run("ip", ["link", "set", "lo", "up"], opts);
    } catch (e) {
      await ns.dispose();
      throw e;
    }
    return ns;
  }

  /**
   * Sets or clears `quickack` on the namespace's route to us: what docs/transfer-paths.md §4 asks
   * of a mover's routes to VM hosts (QEMU's NBD server leaves Nagle on, so without it every small
   * reply waits for this side's delayed ACK).
   */
  async quickack(on: boolean, signal: AbortSignal): Promise<void> {
    const subnet = `${this.address.split(".").slice(0, 3).join(".")}.0/24`;
    await this.run(
      "ip",
      [
        "route",
        "change",
        subnet,
        "dev",
        this.nsIf,
        "proto",
        "kernel",
        "scope",
        "link",
        "src",
        this.address,
        ...(on ? ["quickack", "1"] : []),
      ],
      { signal, timeoutMs: 15_000 },
    );
  }

  /** Runs a program inside the namespace (argument array, never a shell). */
  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run("ip", ["netns", "exec", this.name, cmd, ...args], opts);
  }

  /**
   * Runs a TypeScript module inside the namespace as `node --import tsx script …args`, with `input`
   * on stdin; resolves with its stdout (the script's answer) or rejects with its stderr.
   */
  async node(script: string, args: readonly string[], input: string, signal: AbortSignal): Promise<string> {
    const r = await execa(
      "ip",
      ["netns", "exec", this.name, process.execPath, "--import", "tsx", script, ...args],
      {
        input,
        cancelSignal: signal,
        reject: false,
        env: { LC_ALL: "C" },
      },
    );
    if (r.exitCode !== 0) {
      throw new LabError(`${script} in ${this.name} failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
    }
    return String(r.stdout);
  }

  /** Kills whatever still runs inside, then deletes the namespace (its veth pair goes with it). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await removeNs(this.name);
  }

  /** Removes namespaces whose creating process is gone (a crashed or killed test run). */
  static async sweep(signal: AbortSignal): Promise<string[]> {
    const r = await run("ip", ["netns", "list"], { signal, allowFailure: true });
    const stale: string[] = [];
    for (const line of r.stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      const m = new RegExp(`^${PREFIX}(\\d+)-[0-9a-f]+$`).exec(name);
      if (!m || isAlive(Number(m[1]))) continue;
      await removeNs(name);
      stale.push(name);
    }
    return stale;
  }
}

async function removeNs(name: string): Promise<void> {
  const pids = await run("ip", ["netns", "pids", name], { allowFailure: true, timeoutMs: 15_000 });
  for (const p of pids.stdout
    .split("\n")
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await run("ip", ["netns", "del", name], { allowFailure: true, timeoutMs: 15_000 });
}

/** A 10.222.X prefix no interface here uses yet. */
async function freeSubnet(signal: AbortSignal): Promise<string> {
  const used = (await run("ip", ["-4", "-o", "addr", "show"], { signal })).stdout;
  for (let i = 0; i < 50; i++) {
    const prefix = `10.222.${randomInt(1, 255)}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new LabError("no free 10.222.X.0/24 subnet for a test namespace");
}
