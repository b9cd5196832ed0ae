import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { abortError, CairnError, isCairnError } from "../../errors/CairnError.js";
import { NbdClient } from "../../nbd/NbdClient.js";
import { closeFd } from "../backends/fdIo.js";
import { createRestoreFile, type RestoreFile } from "./createRestoreFile.js";
import type { RestoreTarget } from "./RestoreTarget.js";

export interface Qcow2Options {
  /** qemu-nbd --cache. Default none: measured a little faster (docs/field-notes.md, "Disk restore"). */
  cache?: "none" | "writeback";
  /** Deadline for qemu-img create and for qemu-nbd to listen. Default 60 s. */
  startTimeoutMs?: number;
}

const EXPORT = "restore";

/**
 * A new qcow2 written directly: `qemu-img create`, then `qemu-nbd` serves it (read-write) on a
 * unix socket in a private directory and Cairn's NBD client writes only the data chunks. The
 * clusters of zero runs are never touched: a fresh qcow2 reads zeros there (no raw temporary,
 * no second pass).
 */
export class Qcow2FileTarget implements RestoreTarget {
  private constructor(
    private readonly file: RestoreFile,
    private readonly server: QemuNbdWriter,
    private readonly client: NbdClient,
  ) {}

  get path(): string {
    return this.file.path;
  }
  get kind(): "new-file" | "replace-file" {
    return this.file.kind;
  }

  static async create(
    path: string,
    kind: "new-file" | "replace-file",
    size: number,
    signal: AbortSignal,
    o: Qcow2Options = {},
  ): Promise<Qcow2FileTarget> {
    const timeout = o.startTimeoutMs ?? 60_000;
    const file = await createRestoreFile(path, kind);
    await closeFd(file.fd).catch(() => {});
    // Absolute: QEMU would read "nbd:…" or "file:…" in a relative name as a protocol prefix.
    const image = resolve(file.writePath);
    let server: QemuNbdWriter | undefined;
    try {
      // qemu-img opens the file we created (O_TRUNC on an existing file keeps its 0600 mode).
      await execa("qemu-img", ["create", "-q", "-f", "qcow2", image, String(size)], {
        cancelSignal: signal,
        timeout,
        env: { LC_ALL: "C" },
      }).catch((e: unknown) => {
        if (signal.aborted) throw abortError(signal, `creating ${path}`);
        throw new CairnError("internal", `qemu-img create of ${path} failed: ${stderrOf(e)}`, { cause: e });
      });
      server = await QemuNbdWriter.start(image, o.cache ?? "none");
      const client = await server.connect(timeout, signal);
      return new Qcow2FileTarget(file, server, client);
    } catch (e) {
      await server?.stop();
      await file.remove();
      throw e;
    }
  }

  async writeData(offset: number, data: Buffer, signal: AbortSignal): Promise<void> {
    await this.client.write(offset, data, { signal });
  }

  async ensureZero(): Promise<number> {
    return 0; // an unallocated cluster of the new image
  }

  async commit(signal: AbortSignal): Promise<void> {
    try {
      await this.client.flush({ signal });
      await this.client.close();
      await this.server.stop(true);
    } catch (e) {
      await this.discard();
      throw e;
    }
    await this.file.publish();
  }

  async discard(): Promise<void> {
    this.client.destroy();
    await this.server.stop();
    await this.file.remove();
  }
}

/** qemu-nbd serving one image read-write on a unix socket in a private (0700) directory. */
class QemuNbdWriter {
  private constructor(
    private readonly child: ResultPromise,
    private readonly dir: string,
    private readonly image: string,
  ) {}

  get socket(): string {
    return join(this.dir, "nbd.sock");
  }

  static async start(image: string, cache: "none" | "writeback"): Promise<QemuNbdWriter> {
    const dir = await mkdtemp(join(tmpdir(), "cairn-restore-"));
    const socket = join(dir, "nbd.sock");
    const child = execa(
      "qemu-nbd",
      ["-f", "qcow2", `--cache=${cache}`, "-x", EXPORT, "-k", socket, "--shared=1", image],
      { reject: false, stdin: "ignore", env: { LC_ALL: "C" } },
    );
    return new QemuNbdWriter(child, dir, image);
  }

  /**
   * Connects once qemu-nbd listens. The socket file appears at bind(), before listen(): until then
   * a connect is refused, so "unavailable" is retried while qemu-nbd runs and the deadline allows.
   */
  async connect(timeoutMs: number, signal: AbortSignal): Promise<NbdClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const exited = this.child.exitCode !== null || this.child.signalCode !== null;
      if (exited || signal.aborted || Date.now() > deadline) {
        await this.stop();
        if (signal.aborted) throw abortError(signal, `serving ${this.image} for the restore`);
        const r = await this.child;
        throw new CairnError(
          "internal",
          `qemu-nbd could not serve ${this.image}: ${String(r.stderr).trim() || (exited ? `exited with ${r.exitCode}` : "not listening in time")}`,
        );
      }
      if (existsSync(this.socket)) {
        try {
          return await NbdClient.connect({ target: { path: this.socket }, exportName: EXPORT, signal });
        } catch (e) {
          if (!isCairnError(e, "unavailable")) throw e;
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Ends qemu-nbd (SIGTERM: it closes the image cleanly). `checked`: a failed exit is an error. */
  async stop(checked = false): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    const r = await this.child;
    clearTimeout(t);
    await rm(this.dir, { recursive: true, force: true });
    if (checked && r.exitCode !== 0 && r.signal !== "SIGTERM")
      throw new CairnError(
        "internal",
        `qemu-nbd writing the restored qcow2 failed: ${String(r.stderr).trim()}`,
      );
  }
}

function stderrOf(e: unknown): string {
  const s = (e as { stderr?: unknown } | undefined)?.stderr;
  return typeof s === "string" && s.trim() ? s.trim() : ((e as Error | undefined)?.message ?? String(e));
}
