import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";

/** A tracked server process. Wrapped: returning execa's thenable from an async function would await its exit. */
export interface Spawned {
  proc: ResultPromise;
  pid: number;
}

/**
 * Spawns NBD peers (qemu-nbd, nbdkit) for tests and kills exactly those, by PID, in stopAll().
 * Every server listens on a unix socket inside a private mkdtemp directory: nothing is reachable
 * from outside the machine and tests never collide on ports.
 */
export class Peers {
  private readonly procs: ResultPromise[] = [];
  private readonly dirs: string[] = [];

  async tempDir(prefix = "cairn-nbd-"): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  /** qemu-nbd serving `image` on a unix socket; resolves once the socket accepts connections. */
  async qemuNbd(opts: {
    image: string;
    format: "raw" | "qcow2";
    socket: string;
    readOnly?: boolean;
    bitmaps?: string[];
    exportName?: string;
    extra?: string[];
  }): Promise<Spawned> {
    const args = [
      "--persistent",
      "--shared=8",
      "--format",
      opts.format,
      "--socket",
      opts.socket,
      ...(opts.exportName === undefined ? [] : ["--export-name", opts.exportName]),
      ...(opts.readOnly ? ["--read-only"] : []),
      ...(opts.bitmaps ?? []).flatMap((b) => ["--bitmap", b]),
      ...(opts.extra ?? []),
      opts.image,
    ];
    return this.spawn("qemu-nbd", args, opts.socket);
  }

  /** nbdkit in the foreground on a unix socket, exiting with us if we die (--exit-with-parent). */
  async nbdkit(opts: {
    socket: string;
    plugin: string;
    params?: string[];
    filters?: string[];
    readOnly?: boolean;
  }) {
    const args = [
      "--foreground",
      "--exit-with-parent",
      "--unix",
      opts.socket,
      ...(opts.readOnly ? ["--readonly"] : []),
      ...(opts.filters ?? []).flatMap((f) => ["--filter", f]),
      opts.plugin,
      ...(opts.params ?? []),
    ];
    return this.spawn("nbdkit", args, opts.socket);
  }

  /** Runs a spawned-and-tracked server; `readyPath` is a socket that must accept a connection. */
  async spawn(cmd: string, args: string[], ready: string | { port: number }): Promise<Spawned> {
    const p = execa(cmd, args, {
      reject: false,
      stdio: ["ignore", "pipe", "pipe"],
      buffer: { stdout: false },
    });
    this.procs.push(p);
    let stderr = "";
    p.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      if (p.exitCode !== null) throw new Error(`${cmd} exited early (${p.exitCode}): ${stderr}`);
      if (
        typeof ready === "string" ? existsSync(ready) && (await canConnect(ready)) : await canConnect(ready)
      ) {
        return { proc: p, pid: p.pid! };
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`${cmd} did not start listening on ${JSON.stringify(ready)} within 15 s: ${stderr}`);
  }

  /** Kills one tracked process by PID and waits for it to exit. */
  async stop(s: Spawned | ResultPromise): Promise<void> {
    const p = "proc" in s ? s.proc : s;
    if (p.pid !== undefined && p.exitCode === null) {
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 3000);
      await p.catch(() => {});
      clearTimeout(t);
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => this.stop(p)));
    this.procs.length = 0;
    await Promise.all(this.dirs.map((d) => rm(d, { recursive: true, force: true })));
    this.dirs.length = 0;
  }
}

function canConnect(at: string | { port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof at === "string" ? net.connect(at) : net.connect(at.port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Runs a tool to completion (argument arrays only) and returns stdout; throws with stderr on failure. */
export async function run(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await execa(cmd, args, { reject: false, ...(input === undefined ? {} : { input }) });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

/** A free loopback TCP port (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      const port = typeof a === "object" && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
