import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  copyFile,
  link,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { LabError, run } from "../run.js";

const HERE = dirname(fileURLToPath(import.meta.url));
/** Bump when the build changes in a way the inputs' hash cannot see. */
const BUILD_VERSION = "1";
const MODULES = ["virtio_pci", "virtio_blk", "virtio_console", "ext4", "button", "evdev", "pvpanic_mmio"];

export interface GuestImage {
  dir: string;
  /** Uncompressed kernel: QEMU boots it through the PVH entry, skipping ~3.5 s of xz under TCG. */
  vmlinux: string;
  initrd: string;
  /** 64 MiB qcow2 with an empty ext4 filesystem: copied as each VM's first disk (/data). */
  dataDiskTemplate: string;
  key: string;
}

/**
 * Builds the tiny lab guest once and caches it under `cacheDir`, keyed by the kernel and
 * qemu-guest-agent package versions and this build's own sources.
 */
export async function buildGuest(cacheDir: string): Promise<GuestImage> {
  const kernelPkg = await kernelPackageName();
  const qgaVersion = await candidateVersion("qemu-guest-agent");
  const init = await readFile(join(HERE, "init.sh"), "utf8");
  const shutdown = await readFile(join(HERE, "shutdown.sh"), "utf8");
  const key = createHash("sha256")
    .update([BUILD_VERSION, kernelPkg, qgaVersion, init, shutdown, MODULES.join(",")].join("\0"))
    .digest("hex")
    .slice(0, 16);
  const out = join(cacheDir, `guest-${key}`);
  const image: GuestImage = {
    dir: out,
    vmlinux: join(out, "vmlinux"),
    initrd: join(out, "initrd.img"),
    dataDiskTemplate: join(out, "data.qcow2"),
    key,
  };
  if (existsSync(join(out, "COMPLETE"))) return image;

  const debs = join(cacheDir, "debs");
  await mkdir(debs, { recursive: true });
  await downloadDeb(kernelPkg, debs);
  await downloadDeb("qemu-guest-agent", debs);

  const work = `${out}.tmp-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const kpkg = join(work, "kpkg");
    const qga = join(work, "qga");
    await run("dpkg", ["-x", await findDeb(debs, kernelPkg), kpkg], { timeoutMs: 300_000 });
    await run("dpkg", ["-x", await findDeb(debs, "qemu-guest-agent"), qga]);
    const kv = (await readdir(join(kpkg, "lib", "modules")))[0];
    if (!kv) throw new LabError(`no kernel modules in ${kernelPkg}`);
    await extractVmlinux(join(kpkg, "boot", `vmlinuz-${kv}`), join(work, "vmlinux"));
    await run("depmod", ["-b", kpkg, kv]);
    await buildInitrd(work, kpkg, kv, qga, init, shutdown);
    await buildDataDisk(work);
    await rm(kpkg, { recursive: true, force: true });
    await rm(qga, { recursive: true, force: true });
    await writeFile(join(work, "COMPLETE"), `${new Date().toISOString()} ${kernelPkg} ${qgaVersion}\n`);
    await rm(out, { recursive: true, force: true });
    await rename(work, out);
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
  return image;
}

async function kernelPackageName(): Promise<string> {
  const r = await run("apt-cache", ["depends", "linux-image-amd64"], { timeoutMs: 30_000 });
  const m = /Depends: (linux-image-6\S+)/.exec(r.stdout);
  if (!m?.[1])
    throw new LabError(
      "cannot find Debian's kernel package (apt-cache depends linux-image-amd64); run apt-get update",
    );
  return m[1];
}

async function candidateVersion(pkg: string): Promise<string> {
  const r = await run("apt-cache", ["policy", pkg], { timeoutMs: 30_000 });
  return /Candidate: (\S+)/.exec(r.stdout)?.[1] ?? "unknown";
}

async function downloadDeb(pkg: string, dir: string): Promise<void> {
  if ((await readdir(dir)).some((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"))) return;
  await run("apt-get", ["download", "-q", pkg], { cwd: dir, timeoutMs: 600_000 });
}

async function findDeb(dir: string, pkg: string): Promise<string> {
  const f = (await readdir(dir)).find((n) => n.startsWith(`${pkg}_`) && n.endsWith(".deb"));
  if (!f) throw new LabError(`${pkg}.deb missing from ${dir}`);
  return join(dir, f);
}

/** vmlinuz is a boot stub followed by an xz stream: decompress from the xz magic on. */
async function extractVmlinux(vmlinuz: string, dest: string): Promise<void> {
  const data = await readFile(vmlinuz);
  const at = data.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  if (at < 0) throw new LabError(`${vmlinuz} holds no xz stream`);
  await execa("xz", ["-dc", "--single-stream"], {
    input: data.subarray(at),
    stdout: { file: dest },
    timeout: 120_000,
  });
}

async function buildInitrd(
  work: string,
  kpkg: string,
  kv: string,
  qga: string,
  init: string,
  shutdown: string,
): Promise<void> {
  const R = join(work, "root");
  for (const d of [
    "bin",
    "sbin",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "data",
    "etc/acpi/PWRF",
    "lib/modules",
    "lib64",
    "var/log",
    "var/lib",
    "usr/sbin",
  ]) {
    await mkdir(join(R, d), { recursive: true });
  }
  await symlink("../run", join(R, "var", "run"));
  await copyFile("/bin/busybox", join(R, "bin", "busybox"));
  await chmod(join(R, "bin", "busybox"), 0o755);

  // Modules in dependency order, each once.
  const order: string[] = [];
  for (const m of MODULES) {
    const r = await run("modprobe", ["-d", kpkg, "-S", kv, "--show-depends", m]);
    for (const line of r.stdout.split("\n")) {
      const ko = /^insmod (\S+)/.exec(line)?.[1];
      if (ko && !order.includes(ko)) order.push(ko);
    }
  }
  const names: string[] = [];
  for (const ko of order) {
    const name = basename(ko).replace(/\.xz$/, "");
    if (ko.endsWith(".xz")) {
      await execa("xz", ["-dc", ko], { stdout: { file: join(R, "lib", "modules", name) } });
    } else {
      await copyFile(ko, join(R, "lib", "modules", name));
    }
    names.push(name);
  }
  await writeFile(join(R, "lib", "modules", "load.list"), `${names.join("\n")}\n`);

  // qemu-ga and the shared libraries it links (the host is the same Debian release).
  await copyFile(join(qga, "usr", "sbin", "qemu-ga"), join(R, "usr", "sbin", "qemu-ga"));
  await chmod(join(R, "usr", "sbin", "qemu-ga"), 0o755);
  const ldd = await run("ldd", [join(qga, "usr", "sbin", "qemu-ga")]);
  const libs = new Set<string>(["/lib64/ld-linux-x86-64.so.2"]);
  for (const line of ldd.stdout.split("\n")) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  for (const lib of libs) {
    await mkdir(join(R, dirname(lib)), { recursive: true });
    await copyFile(lib, join(R, lib));
  }

  await writeFile(join(R, "init"), init, { mode: 0o755 });
  await writeFile(join(R, "sbin", "shutdown"), shutdown, { mode: 0o755 });
  await writeFile(join(R, "etc", "acpi", "PWRF", "00000080"), "#!/bin/sh\nexec /sbin/shutdown -h -P +0\n", {
    mode: 0o755,
  });
  const list = await execa("find", ["."], { cwd: R });
  await execa("cpio", ["-o", "-H", "newc", "--quiet"], {
    cwd: R,
    input: list.stdout,
    encoding: "buffer",
  }).pipe("gzip", ["-1"], { stdout: { file: join(work, "initrd.img") } });
  await rm(R, { recursive: true, force: true });
}

async function buildDataDisk(work: string): Promise<void> {
  const raw = join(work, "data.raw");
  await writeFile(raw, "");
  await run("truncate", ["-s", "64M", raw]);
  await run("mkfs.ext4", ["-q", "-F", "-L", "data", raw]);
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, join(work, "data.qcow2")]);
  await rm(raw);
}

/** Hard-links (or copies) the cached guest into a directory QEMU can read. */
export async function installGuest(image: GuestImage, runRoot: string): Promise<GuestImage> {
  const dir = join(runRoot, `guest-${image.key}`);
  if (!existsSync(join(dir, "COMPLETE"))) {
    await mkdir(dir, { recursive: true });
    for (const f of ["vmlinux", "initrd.img", "data.qcow2", "COMPLETE"]) {
      const src = join(image.dir, f);
      const dst = join(dir, f);
      await rm(dst, { force: true });
      await link(src, dst).catch(() => copyFile(src, dst));
    }
  }
  return {
    dir,
    vmlinux: join(dir, "vmlinux"),
    initrd: join(dir, "initrd.img"),
    dataDiskTemplate: join(dir, "data.qcow2"),
    key: image.key,
  };
}
