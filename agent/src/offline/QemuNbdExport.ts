import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { imageInUseError } from "../image/imageInUseError.js";

export interface QemuNbdExportOptions {
  image: string;
  format: string;
  /** Unix socket to listen on (a local reader). Exactly one of socketPath and tcp. */
  socketPath?: string;
  /**
   * TCP listener for a reader on another host (docs/transfer-paths.md §5): always TLS with peer
   * verification; tlsDir holds ca-cert.pem, server-cert.pem and server-key.pem (JobCredentials.dir).
   */
  tcp?: { host: string; port: number; tlsDir: string };
  exportName: string;
  /** Persistent bitmap to expose as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  startTimeoutMs: number;
  signal: AbortSignal;
}

/**
 * A read-only qemu-nbd export of a shut-off VM's disk on a unix socket, or on TCP with TLS. qemu-nbd
 * holds a shared read lock: a VM started meanwhile fails to take its write lock instead of racing
 * the backup.
 */
export class QemuNbdExport {
  private constructor(
    private readonly child: ResultPromise,
    private readonly unixPath: string | undefined,
    readonly exportName: string,
    /** Where a network reader connects (TLS always), when exported on TCP. */
    readonly tcp?: { host: string; port: number },
    /** qemu-nbd's pid file of a TCP export (in the job's TLS directory), removed at stop. */
    private readonly pidFile?: string,
  ) {}

  /** The unix socket of a local export ("internal" for a TCP export: there is none). */
  get socketPath(): string {
    if (this.unixPath === undefined) {
      throw new CairnError("internal", `export ${this.exportName} listens on TCP, not on a unix socket`);
    }
    return this.unixPath;
  }

  /** The qemu-nbd process (recorded so a restarted agent can end an orphan). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(o: QemuNbdExportOptions): Promise<QemuNbdExport> {
    if ((o.socketPath === undefined) === (o.tcp === undefined)) {
      throw new CairnError("invalid-argument", "qemu-nbd export: give exactly one of socketPath and tcp");
    }
    const args = ["-r", "-f", o.format, "-x", o.exportName, "--persistent", "--shared=4"];
    // On TCP, qemu-nbd writes its pid file only once it listens: that file is the readiness signal
    // (a probe connection could reach another process holding the port).
    let ready: string;
    if (o.tcp) {
      const creds = "cairn-tls";
      ready = join(o.tcp.tlsDir, `qemu-nbd-${o.tcp.port}-${randomBytes(4).toString("hex")}.pid`);
      await rm(ready, { force: true });
      args.push(
        "--object",
        `tls-creds-x509,id=${creds},endpoint=server,dir=${qemuOptValue(o.tcp.tlsDir)},verify-peer=on`,
        `--tls-creds=${creds}`,
        "-b",
        o.tcp.host,
        "-p",
        String(o.tcp.port),
        "--pid-file",
        ready,
      );
    } else {
      ready = o.socketPath!;
      args.push("-k", ready);
    }
    if (o.bitmap) args.push("-B", o.bitmap);
    args.push(o.image);
    const child = execa("qemu-nbd", args, { reject: false, stdin: "ignore", env: { LC_ALL: "C" } });
    let exited = false;
    void child.then(() => {
      exited = true;
    });
    const deadline = Date.now() + o.startTimeoutMs;
    while (!existsSync(ready)) {
      if (exited || o.signal.aborted || Date.now() > deadline) {
        child.kill("SIGKILL");
        const r = await child;
        const stderr = String(r.stderr).trim();
        if (!o.signal.aborted) {
          const inUse = imageInUseError(o.image, stderr);
          if (inUse) throw inUse;
        }
        throw new CairnError(
          o.signal.aborted ? "aborted" : "failed-precondition",
          `qemu-nbd could not export ${o.image}: ${stderr || (exited ? `exited with ${r.exitCode}` : "no socket in time")}`,
          { hint: "see the message" },
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return o.tcp
      ? new QemuNbdExport(child, undefined, o.exportName, { host: o.tcp.host, port: o.tcp.port }, ready)
      : new QemuNbdExport(child, ready, o.exportName);
  }

  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.child;
    clearTimeout(t);
    if (this.pidFile) await rm(this.pidFile, { force: true });
  }
}

/** QEMU's option syntax doubles a comma inside a value; anything else passes through as is. */
function qemuOptValue(v: string): string {
  return v.replace(/,/g, ",,");
}
