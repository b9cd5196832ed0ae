import { existsSync } from "node:fs";
import { execa, type ResultPromise } from "execa";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { imageInUseError } from "../image/imageInUseError.js";

export interface QemuNbdExportOptions {
  image: string;
  format: string;
  socketPath: string;
  exportName: string;
  /** Persistent bitmap to expose as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  startTimeoutMs: number;
  signal: AbortSignal;
}

/**
 * A read-only qemu-nbd export of a shut-off VM's disk on a unix socket. qemu-nbd holds a shared
 * read lock: a VM started meanwhile fails to take its write lock instead of racing the backup.
 */
export class QemuNbdExport {
  private constructor(
    private readonly child: ResultPromise,
    readonly socketPath: string,
    readonly exportName: string,
  ) {}

  /** The qemu-nbd process (recorded so a restarted agent can end an orphan). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(o: QemuNbdExportOptions): Promise<QemuNbdExport> {
    const args = ["-r", "-f", o.format, "-k", o.socketPath, "-x", o.exportName, "--persistent", "--shared=4"];
    if (o.bitmap) args.push("-B", o.bitmap);
    args.push(o.image);
    const child = execa("qemu-nbd", args, { reject: false, stdin: "ignore", env: { LC_ALL: "C" } });
    let exited = false;
    void child.then(() => {
      exited = true;
    });
    const deadline = Date.now() + o.startTimeoutMs;
    while (!existsSync(o.socketPath)) {
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
    return new QemuNbdExport(child, o.socketPath, o.exportName);
  }

  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.child;
    clearTimeout(t);
  }
}
