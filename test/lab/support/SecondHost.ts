import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, chmod, cp, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LabHost } from "./LabHost.js";
import { isAlive, readPid, stopPid } from "./libvirtDaemons.js";
import { backupTlsSettings, ensureLibvirtConf } from "./qemuConf.js";
import { LabError, run, waitFor } from "./run.js";

const INIT_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "host2-namespace-init.sh");

export interface SecondHost {
  host: LabHost;
  stop(): Promise<void>;
}

/**
 * A second libvirt host on this machine: its own libvirtd in private mount and UTS namespaces, with
 * its own /run, config, state, host_uuid (libvirt refuses to migrate to a host with the same UUID) and
 * migration port range. Same network namespace: migration traffic uses 127.0.0.1.
 */
export async function startSecondHost(
  dir: string,
  opts: {
    timeoutMs: number /** Appended to libvirtd.conf (tests use it to break the daemon). */;
    extraLibvirtdConf?: string;
  },
): Promise<SecondHost> {
  const N = dir;
  await rm(N, { recursive: true, force: true });
  for (const d of ["run", "log/qemu", "cache", "etc", "varlib"]) await mkdir(join(N, d), { recursive: true });
  await cp("/etc/libvirt", join(N, "etc"), { recursive: true });
  // No domains of host 1 in host 2's config.
  const qemuEtc = join(N, "etc", "qemu");
  for (const f of await readdir(qemuEtc).catch(() => [])) {
    if (f.endsWith(".xml")) await rm(join(qemuEtc, f));
  }
  await appendFile(
    join(N, "etc", "libvirtd.conf"),
    `\nhost_uuid = "${randomUUID()}"\n${opts.extraLibvirtdConf ?? ""}\n`,
  );
  const migrationPorts: [number, number] = [49400, 49499];
  await appendFile(
    join(N, "etc", "qemu.conf"),
    `\nmigration_port_min = ${migrationPorts[0]}\nmigration_port_max = ${migrationPorts[1]}\n` +
      "remote_display_port_min = 5990\nremote_display_port_max = 6090\n",
  );
  // Its own backup TLS directory: host 1's agent writes /var/lib/cairn-agent/backup-tls, which this
  // daemon would see too (only /run and libvirt's directories are private to it).
  const backupTlsDir = join(N, "backup-tls");
  await mkdir(backupTlsDir, { recursive: true, mode: 0o711 });
  await ensureLibvirtConf(join(N, "etc", "qemu.conf"), backupTlsSettings(backupTlsDir));
  const varlib = join(N, "varlib");
  for (const d of ["boot", "images", "sanlock"]) await mkdir(join(varlib, d), { recursive: true });
  for (const d of ["channel/target", "checkpoint", "dump", "nvram", "ram", "save", "snapshot"]) {
    await mkdir(join(varlib, "qemu", d), { recursive: true });
  }
  await run("chown", ["-R", "libvirt-qemu:libvirt-qemu", join(varlib, "qemu")]);
  await chmod(join(varlib, "qemu"), 0o750);
  // Reuse host 1's QEMU capabilities cache: libvirt revalidates it and re-probes only if stale.
  if (existsSync("/var/cache/libvirt/qemu")) {
    await cp("/var/cache/libvirt/qemu", join(N, "cache", "qemu"), { recursive: true });
  }
  const r = await run("unshare", ["--mount", "--uts", "--propagation", "private", "bash", INIT_SCRIPT, N], {
    timeoutMs: 30_000,
    allowFailure: true,
  });
  const pidfiles = ["libvirtd", "virtlockd", "virtlogd"].map((n) => join(N, "run", `${n}.pid`));
  const stop = async () => {
    for (const f of pidfiles) {
      const pid = await readPid(f);
      if (pid) await stopPid(pid, 10_000);
    }
    // The namespace's bind mounts went with its last process; the state directory is ours to remove.
    await rm(N, { recursive: true, force: true });
  };
  if (r.exitCode !== 0) {
    await stop();
    throw new LabError(`second libvirtd failed to start: ${(r.stderr || r.stdout).trim()}`);
  }
  const sock = join(N, "run", "libvirt", "libvirt-sock");
  const host: LabHost = {
    name: "host2",
    uri: `qemu+unix:///system?socket=${sock}`,
    qemuRunDir: join(N, "run", "libvirt", "qemu"),
    migrationPorts,
    backupTls: {
      dir: backupTlsDir,
      qemuConfPath: join(N, "etc", "qemu.conf"),
      daemonPidFile: pidfiles[0]!,
    },
  };
  try {
    await waitFor(
      "the second libvirtd to answer",
      async () => {
        const pid = await readPid(pidfiles[0]!);
        if (pid && !isAlive(pid)) throw new LabError("the second libvirtd exited right after starting");
        if (!existsSync(sock)) return undefined;
        const v = await run("virsh", ["-c", host.uri, "version"], { allowFailure: true, timeoutMs: 30_000 });
        return v.exitCode === 0 ? true : undefined;
      },
      { timeoutMs: opts.timeoutMs, intervalMs: 200 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { host, stop };
}
