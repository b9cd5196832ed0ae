import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readFile } from "node:fs/promises";
import { backupTlsSettings, DEFAULT_BACKUP_TLS_DIR, ensureLibvirtConf } from "./qemuConf.js";
import { LabError, run, waitFor } from "./run.js";

/** The first daemon's qemu.conf (the second host copies it, see SecondHost.ts). */
export const QEMU_CONF = "/etc/libvirt/qemu.conf";

/** PIDs of the daemons this lab started (and so may stop). Daemons it found running are left alone. */
export interface StartedDaemons {
  pids: { name: string; pid: number }[];
}

const DAEMONS = ["virtlogd", "virtlockd", "libvirtd"] as const;

export async function readPid(pidfile: string): Promise<number | undefined> {
  const text = await readFile(pidfile, "utf8").catch(() => "");
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isFinite(pid) && pid > 0 ? pid : undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts virtlogd, virtlockd and libvirtd without systemd (there is none here), each daemonized
 * with its pidfile in /run. The first libvirtd start probes QEMU (~10 s) and caches the result.
 */
export async function startLibvirt(opts: { timeoutMs: number }): Promise<StartedDaemons> {
  await ensureKvmDeviceAccess();
  await ensureRunIsTmpfs();
  // Network exports (docs/transfer-paths.md §5): libvirt reads qemu.conf only when it starts, so a
  // running libvirtd is restarted when the settings were missing (its QEMUs keep running). A daemon
  // restarted here was someone else's: it stays running at teardown, as before.
  await mkdir(DEFAULT_BACKUP_TLS_DIR, { recursive: true, mode: 0o711 });
  const confChanged = await ensureLibvirtConf(QEMU_CONF, backupTlsSettings(DEFAULT_BACKUP_TLS_DIR));
  let restarted = false;
  if (confChanged) {
    const running = await readPid("/run/libvirtd.pid");
    if (running && isAlive(running)) {
      await stopPid(running, 30_000);
      restarted = true;
    }
  }
  const started: StartedDaemons = { pids: [] };
  for (const name of DAEMONS) {
    const pidfile = `/run/${name}.pid`;
    const existing = await readPid(pidfile);
    if (existing && isAlive(existing)) continue;
    if (name === "libvirtd" && restarted) {
      await run(`/usr/sbin/${name}`, ["-d"], { timeoutMs: 30_000 });
      continue;
    }
    await run(`/usr/sbin/${name}`, ["-d"], { timeoutMs: 30_000 });
    const pid = await waitFor(
      `${name} to write ${pidfile}`,
      async () => {
        const p = await readPid(pidfile);
        return p && isAlive(p) ? p : undefined;
      },
      { timeoutMs: 15_000 },
    );
    started.pids.push({ name, pid });
  }
  await waitFor(
    "libvirtd to answer on qemu:///system",
    async () => {
      if (!existsSync(`${LIBVIRT_RUN_DIR}/libvirt-sock`)) return undefined;
      const r = await run("virsh", ["-c", "qemu:///system", "version"], {
        allowFailure: true,
        timeoutMs: opts.timeoutMs,
      });
      return r.exitCode === 0 ? true : undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: 200, describe: () => daemonLogTail() },
  );
  return started;
}

/** Stops exactly the given daemons by PID (TERM, then KILL after a grace period). */
export async function stopDaemons(daemons: StartedDaemons): Promise<void> {
  for (const { pid } of [...daemons.pids].reverse()) await stopPid(pid, 10_000);
}

export async function stopPid(pid: number, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
}

/**
 * libvirt's QEMU runs as libvirt-qemu (group kvm) and refuses to start at all without access to
 * /dev/kvm, which has no udev rule here (root:root 0600). The lab still boots guests with TCG.
 */
async function ensureKvmDeviceAccess(): Promise<void> {
  if (!existsSync("/dev/kvm")) return;
  const r = await run("getent", ["group", "kvm"], { allowFailure: true });
  const gid = Number.parseInt(r.stdout.split(":")[2] ?? "", 10);
  if (!Number.isFinite(gid)) throw new LabError("group kvm does not exist: is qemu-system-x86 installed?");
  await chown("/dev/kvm", 0, gid);
  await chmod("/dev/kvm", 0o660);
}

/** Where the daemons keep their sockets and the running domains' status XML. */
const LIBVIRT_RUN_DIR = "/run/libvirt";

/**
 * On a systemd host /run is a tmpfs; here it is the root disk. libvirtd rewrites a domain's status
 * XML with fsync on every job change, several times inside backup-begin: on disk that put ~7 ms
 * into every freeze window that production hosts do not have. So the lab gives /run/libvirt a tmpfs
 * before it starts the daemons, unless one of them (or a QEMU, whose status files live there)
 * already runs.
 */
async function ensureRunIsTmpfs(): Promise<void> {
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  if (mounts.split("\n").some((l) => l.split(" ")[4] === LIBVIRT_RUN_DIR)) return;
  const busy = await run("pgrep", ["-x", "libvirtd|virtlogd|virtlockd|qemu-system-x86"], {
    allowFailure: true,
  });
  if (busy.exitCode === 0) return;
  await mkdir(LIBVIRT_RUN_DIR, { recursive: true });
  // Where mounting is not allowed the lab still works, only with slower status writes.
  await run("mount", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs", LIBVIRT_RUN_DIR], { allowFailure: true });
}

async function daemonLogTail(): Promise<string> {
  const r = await run("ps", ["-eo", "pid,args"], { allowFailure: true });
  const lines = r.stdout.split("\n").filter((l) => /libvirtd|virtlogd|virtlockd/.test(l));
  return `libvirt processes:\n${lines.join("\n") || "(none running)"}`;
}
