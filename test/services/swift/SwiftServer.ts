import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { freePort } from "./freePort.js";
import { type SwiftPorts, swiftConfigFiles } from "./swiftConfig.js";

export interface SwiftS3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** The part of an execa subprocess this helper uses. */
type Proc = {
  pid?: number | undefined;
  exitCode: number | null;
  kill(signal?: NodeJS.Signals): boolean;
} & PromiseLike<unknown>;

/**
 * A real OpenStack Swift with s3api + tempauth + memcached on loopback, under a mkdtemp directory,
 * ports picked at run time. Tracks exactly the PIDs it started and stops only those.
 */
export class SwiftServer implements SwiftS3Endpoint {
  readonly region = "us-east-1";
  readonly accessKeyId = "test:tester";
  readonly secretAccessKey = "testing";
  private readonly procs = new Map<string, Proc>();

  readonly endpoint: string;

  private constructor(
    readonly dir: string,
    readonly ports: SwiftPorts,
  ) {
    this.endpoint = `http://127.0.0.1:${ports.proxy}`;
  }

  /** Connection settings as a plain object (safe to spread). */
  get s3(): SwiftS3Endpoint {
    return {
      endpoint: this.endpoint,
      region: this.region,
      accessKeyId: this.accessKeyId,
      secretAccessKey: this.secretAccessKey,
    };
  }

  static async start(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<SwiftServer> {
    const dir = await mkdtemp(join(tmpdir(), "cairn-swift-"));
    const ports: SwiftPorts = {
      proxy: await freePort(),
      account: await freePort(),
      container: await freePort(),
      object: await freePort(),
      memcached: await freePort(),
    };
    const s = new SwiftServer(dir, ports);
    try {
      await s.setup();
      s.spawn("memcached", "memcached", [
        "-l",
        "127.0.0.1",
        "-p",
        String(ports.memcached),
        "-U",
        "0",
        "-u",
        "root",
      ]);
      for (const name of ["account", "container", "object"] as const) {
        s.spawn(name, `swift-${name}-server`, [join(dir, "etc", `${name}-server.conf`), "-v"]);
      }
      // The proxy's healthcheck does not cover the storage servers: wait until they accept connections.
      const deadline = Date.now() + (options.timeoutMs ?? 60_000);
      for (const port of [ports.memcached, ports.account, ports.container, ports.object]) {
        await waitForPort(port, deadline, options.signal, s.dir);
      }
      await s.startProxy(options);
      return s;
    } catch (e) {
      await s.stop();
      throw e;
    }
  }

  private async setup(): Promise<void> {
    const etc = join(this.dir, "etc");
    await mkdir(join(this.dir, "srv", "sdb1"), { recursive: true });
    await mkdir(join(this.dir, "log"), { recursive: true });
    await mkdir(etc, { recursive: true });
    for (const [name, text] of Object.entries(swiftConfigFiles(this.dir, this.ports)))
      await writeFile(join(etc, name), text);
    const rings: Array<[string, number]> = [
      ["account", this.ports.account],
      ["container", this.ports.container],
      ["object", this.ports.object],
    ];
    for (const [name, port] of rings) {
      const builder = join(etc, `${name}.builder`);
      await execa("swift-ring-builder", [builder, "create", "8", "1", "1"], { timeout: 30_000 });
      await execa("swift-ring-builder", [builder, "add", `r1z1-127.0.0.1:${port}/sdb1`, "1"], {
        timeout: 30_000,
      });
      // rebalance exits 1 with a warning on a one-device ring; the ring file is still written.
      await execa("swift-ring-builder", [builder, "rebalance"], { timeout: 30_000, reject: false });
    }
  }

  private spawn(name: string, file: string, args: string[]): void {
    const file_ = join(this.dir, "log", `${name}.log`);
    const p: Proc = execa(file, args, {
      reject: false,
      stdin: "ignore",
      stdout: { file: file_, append: true },
      stderr: { file: file_, append: true },
      cleanup: true,
    });
    this.procs.set(name, p);
  }

  /** Starts (or restarts) the proxy and waits until S3 answers. */
  async startProxy(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    this.spawn("proxy", "swift-proxy-server", [join(this.dir, "etc", "proxy-server.conf"), "-v"]);
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      options.signal?.throwIfAborted();
      const proxy = this.procs.get("proxy");
      if (proxy?.exitCode !== null && proxy?.exitCode !== undefined) {
        throw new Error(
          `swift-proxy-server exited with ${proxy.exitCode}; see ${join(this.dir, "log", "proxy.log")}`,
        );
      }
      try {
        const r = await fetch(`${this.endpoint}/healthcheck`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline)
        throw new Error(`Swift proxy did not answer within the deadline; see ${this.dir}/log`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Kills the proxy (S3 becomes unreachable; the storage servers keep their data). */
  async stopProxy(): Promise<void> {
    await this.kill("proxy");
  }

  private async kill(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    this.procs.delete(name);
    if (p.pid !== undefined && p.exitCode === null) {
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 5000);
      await p;
      clearTimeout(t);
    }
  }

  /** PIDs this helper started and that are still running (tests assert none remain). */
  get pids(): number[] {
    return [...this.procs.values()]
      .filter((p) => p.exitCode === null && p.pid !== undefined)
      .map((p) => p.pid!);
  }

  async stop(options: { keepDir?: boolean } = {}): Promise<void> {
    for (const name of ["proxy", "object", "container", "account", "memcached"]) await this.kill(name);
    if (!options.keepDir) await rm(this.dir, { recursive: true, force: true });
  }
}

async function waitForPort(
  port: number,
  deadline: number,
  signal: AbortSignal | undefined,
  dir: string,
): Promise<void> {
  const { connect } = await import("node:net");
  for (;;) {
    signal?.throwIfAborted();
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect({ host: "127.0.0.1", port }, () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Swift service on port ${port} did not start; see ${dir}/log`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
