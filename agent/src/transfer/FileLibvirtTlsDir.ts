import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";
import { FFDHE2048_PEM } from "./ffdhe2048.js";
import type { JobCredentials, LibvirtTlsDir } from "./JobTls.js";
import { QEMU_TLS_FILES } from "./OpensslJobTlsMinter.js";

export interface FileLibvirtTlsDirOptions {
  /** The directory qemu.conf's backup_tls_x509_cert_dir names (AgentConfig transfer.libvirtTlsDir). */
  dir: string;
  /**
   * The qemu.conf the libvirt daemon read, as this process sees it (AgentConfig
   * transfer.libvirtQemuConf). Default /etc/libvirt/qemu.conf;
   * a daemon in its own mount namespace (the lab's second host) has its own file elsewhere.
   */
  qemuConfPath?: string;
  /**
   * The daemon's pid file, to tell whether qemu.conf changed after the daemon read it (it reads it
   * only when it starts). Default /run/libvirtd.pid; check() skips the comparison when it is absent.
   */
  daemonPidFile?: string;
  /** QEMU's user (qemu.conf `user`): it must read the key. Default libvirt-qemu (Debian's). */
  qemuUser?: string;
}

/** One queue per directory in this process: the agent is the only writer of its directory. */
const queues = new Map<string, Promise<void>>();

/**
 * libvirt's backup TLS directory (docs/transfer-paths.md §5). QEMU loads the files into a
 * tls-creds-x509 object that libvirt creates during backup-begin and keeps for the backup job's
 * life, so the files only need to be right while backup-begin runs; they are removed afterwards,
 * so no job's server key lingers where the next job's QEMU could load it.
 */
export class FileLibvirtTlsDir implements LibvirtTlsDir {
  private readonly dir: string;
  private readonly qemuConf: string;
  private readonly pidFile: string;
  private readonly qemuUser: string;

  constructor(opts: FileLibvirtTlsDirOptions) {
    this.dir = resolve(opts.dir);
    this.qemuConf = opts.qemuConfPath ?? "/etc/libvirt/qemu.conf";
    this.pidFile = opts.daemonPidFile ?? "/run/libvirtd.pid";
    this.qemuUser = opts.qemuUser ?? "libvirt-qemu";
  }

  async check(signal: AbortSignal): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.qemuConf, { encoding: "utf8", signal });
    } catch (e) {
      if (signal.aborted) throw abortError(signal, "reading qemu.conf");
      throw new CairnError("failed-precondition", `cannot read ${this.qemuConf}: ${(e as Error).message}`, {
        hint: "set transfer.libvirtQemuConf to the qemu.conf libvirt reads, or install libvirt",
      });
    }
    const conf = parseLibvirtConf(text);
    const fix = `set backup_tls_x509_cert_dir = "${this.dir}" and backup_tls_x509_verify = 1 in ${this.qemuConf}, then restart libvirtd`;
    const dir = conf.get("backup_tls_x509_cert_dir");
    if (typeof dir !== "string" || resolve(dir) !== this.dir) {
      throw new CairnError(
        "failed-precondition",
        `network exports need qemu.conf's backup_tls_x509_cert_dir to be ${JSON.stringify(this.dir)} (${this.qemuConf} has ${dir === undefined ? "no setting" : JSON.stringify(dir)})`,
        { hint: fix },
      );
    }
    // libvirt's own fallback: backup_tls_x509_verify, else default_tls_x509_verify, else 1.
    const verify = conf.get("backup_tls_x509_verify") ?? conf.get("default_tls_x509_verify") ?? 1;
    if (verify !== 1) {
      throw new CairnError(
        "failed-precondition",
        `network exports need qemu.conf's backup_tls_x509_verify = 1 (${this.qemuConf} makes it ${JSON.stringify(verify)}): without it QEMU serves any client`,
        { hint: fix },
      );
    }
    const started = await daemonStartTime(this.pidFile, signal);
    if (started !== undefined) {
      const changed = (await stat(this.qemuConf)).mtimeMs;
      if (changed > started + 1000) {
        throw new CairnError(
          "failed-precondition",
          `${this.qemuConf} changed after libvirt's daemon started (it reads qemu.conf only at start): its backup_tls_x509_cert_dir may not be ours yet`,
          { hint: "restart libvirtd" },
        );
      }
    }
  }

  async withCredentials<T>(creds: JobCredentials, fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const release = await lock(this.dir, signal);
    const files: [string, string, number][] = [
      [QEMU_TLS_FILES.ca, creds.caPem, 0o444],
      [QEMU_TLS_FILES.serverCert, creds.serverCertPem, 0o444],
      [QEMU_TLS_FILES.serverKey, creds.serverKeyPem, 0o400],
      [QEMU_TLS_FILES.dhParams, FFDHE2048_PEM, 0o444],
    ];
    try {
      const owner = await userIds(this.qemuUser, signal);
      await mkdir(this.dir, { recursive: true, mode: 0o711 });
      // Traversable, not listable, by QEMU's user; only root writes here.
      await chmod(this.dir, 0o711);
      for (const [name, content, mode] of files) {
        // Each file appears whole (rename), never half-written to a QEMU that loads it now.
        const tmp = join(this.dir, `.${name}.${randomBytes(4).toString("hex")}`);
        await writeFile(tmp, content, { mode: 0o600, signal });
        await chown(tmp, owner.uid, owner.gid);
        await chmod(tmp, mode);
        await rename(tmp, join(this.dir, name));
      }
      return await fn();
    } finally {
      await Promise.all(files.map(([name]) => rm(join(this.dir, name), { force: true })));
      release();
    }
  }
}

/** Scalar settings of a libvirt config file (key = "string" | integer); lists are skipped. */
export function parseLibvirtConf(text: string): Map<string, string | number> {
  const out = new Map<string, string | number>();
  for (const raw of text.split("\n")) {
    const m = /^\s*([A-Za-z0-9_]+)\s*=\s*("((?:[^"\\]|\\.)*)"|-?\d+)\s*(#.*)?$/.exec(raw);
    if (!m) continue;
    // libvirt takes the first entry of a name (virConfGetValue stops at the first match).
    if (!out.has(m[1]!)) out.set(m[1]!, m[3] !== undefined ? m[3] : Number(m[2]));
  }
  return out;
}

/** Waits for this directory's turn; the returned function hands it to the next job. */
async function lock(dir: string, signal: AbortSignal): Promise<() => void> {
  const prev = queues.get(dir) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => {
    release = r;
  });
  const tail = prev.then(() => mine);
  queues.set(dir, tail);
  void tail.then(() => {
    if (queues.get(dir) === tail) queues.delete(dir);
  });
  if (signal.aborted) {
    // Keep the queue intact: our slot passes straight through once prev is done.
    release();
    throw abortError(signal, "waiting for the backup TLS directory");
  }
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      prev,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(abortError(signal, "waiting for the backup TLS directory"));
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } catch (e) {
    release();
    throw e;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
  return release;
}

async function userIds(user: string, signal: AbortSignal): Promise<{ uid: number; gid: number }> {
  const r = await execa("getent", ["passwd", user], { cancelSignal: signal, reject: false, stdin: "ignore" });
  const f = String(r.stdout).trim().split(":");
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (r.exitCode !== 0 || !Number.isInteger(uid) || !Number.isInteger(gid)) {
    if (signal.aborted) throw abortError(signal, "looking up QEMU's user");
    throw new CairnError("failed-precondition", `QEMU's user ${JSON.stringify(user)} does not exist here`, {
      hint: "set the user qemu.conf names",
    });
  }
  return { uid, gid };
}

/** When the process in `pidFile` started (ms since epoch), or undefined when it is not running. */
async function daemonStartTime(pidFile: string, signal: AbortSignal): Promise<number | undefined> {
  const pid = Number.parseInt((await readFile(pidFile, "utf8").catch(() => "")).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const statText = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (!statText) return undefined;
  // Field 22 (starttime, clock ticks after boot) follows the ")" that ends the command name.
  const startTicks = Number(statText.slice(statText.lastIndexOf(")") + 2).split(" ")[19]);
  const btime = Number(/^btime (\d+)$/m.exec(await readFile("/proc/stat", "utf8"))?.[1]);
  const r = await execa("getconf", ["CLK_TCK"], { cancelSignal: signal, reject: false, stdin: "ignore" });
  const hz = Number(String(r.stdout).trim()) || 100;
  if (!Number.isFinite(startTicks) || !Number.isFinite(btime)) return undefined;
  return (btime + startTicks / hz) * 1000;
}
