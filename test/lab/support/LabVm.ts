import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type DiskSpec, type DomainSpec, domainXml } from "./domainXml.js";
import { freePort } from "./freePort.js";
import type { GuestImage } from "./guest/buildGuest.js";
import type { LabHost } from "./LabHost.js";
import { isAlive, readPid } from "./libvirtDaemons.js";
import { LabError, run, waitFor } from "./run.js";

export type LabDiskSpec =
  /** A copy of the guest's 64 MiB ext4 template, mounted at /data in the guest. */
  | { kind: "ext4-data" }
  /** A blank disk: the guest sees a raw block device. qcow2 can carry persistent bitmaps; raw cannot. */
  | {
      kind: "blank";
      format: "qcow2" | "raw";
      sizeMiB: number;
      /** Fill the first N MiB with random bytes (host-side, before boot): data to read in bulk. */
      randomMiB?: number;
    };

export interface LabVmOptions {
  name: string;
  disks: LabDiskSpec[];
  guestAgent?: boolean;
  memoryMiB?: number;
  /** UEFI loader + variable store files (see DomainSpec.uefi: offline-only domains). */
  uefi?: DomainSpec["uefi"];
  /** An emulated TPM 2.0 device (needs swtpm). */
  tpm?: boolean;
  machine?: DomainSpec["machine"];
}

export interface GuestExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A lab VM on a LabHost, with typed helpers for what tests need from a guest. */
export class LabVm {
  host: LabHost;
  readonly disks: DiskSpec[];

  private constructor(
    readonly name: string,
    host: LabHost,
    readonly dir: string,
    disks: DiskSpec[],
    readonly consoleLog: string,
  ) {
    this.host = host;
    this.disks = disks;
  }

  /** Creates the disks and defines the domain (not started). */
  static async create(host: LabHost, guest: GuestImage, runRoot: string, opts: LabVmOptions): Promise<LabVm> {
    const dir = join(runRoot, "vms", opts.name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const disks: DiskSpec[] = [];
    for (const [i, d] of opts.disks.entries()) {
      const target = `vd${String.fromCharCode(97 + i)}`;
      if (d.kind === "ext4-data") {
        const path = join(dir, `${target}.qcow2`);
        await copyFile(guest.dataDiskTemplate, path);
        disks.push({ path, format: "qcow2", target });
      } else {
        const path = join(dir, `${target}.${d.format === "qcow2" ? "qcow2" : "img"}`);
        await run("qemu-img", ["create", "-q", "-f", d.format, path, `${d.sizeMiB}M`]);
        if (d.randomMiB) {
          const raw = join(dir, `${target}.fill.raw`);
          const fh = await open(raw, "w");
          try {
            for (let i = 0; i < d.randomMiB; i++) await fh.write(randomBytes(1024 * 1024));
          } finally {
            await fh.close();
          }
          // Copy into the image in place (keeps its format and size): raw file → image via qemu-img dd-like convert.
          await run("qemu-img", ["convert", "-n", "-f", "raw", "-O", d.format, raw, path], {
            timeoutMs: 300_000,
          });
          await rm(raw, { force: true });
        }
        disks.push({ path, format: d.format, target });
      }
    }
    const consoleLog = join(dir, "console.log");
    const xml = domainXml({
      name: opts.name,
      guest,
      disks,
      memoryMiB: opts.memoryMiB ?? 256,
      guestAgent: opts.guestAgent ?? true,
      virtType: process.env.CAIRN_LAB_VIRT === "kvm" ? "kvm" : "qemu",
      consoleLog,
      ...(opts.uefi ? { uefi: opts.uefi } : {}),
      ...(opts.tpm ? { tpm: true } : {}),
      ...(opts.machine ? { machine: opts.machine } : {}),
    });
    const xmlPath = join(dir, "domain.xml");
    await writeFile(xmlPath, xml);
    await run("virsh", ["-c", host.uri, "define", xmlPath]);
    return new LabVm(opts.name, host, dir, disks, consoleLog);
  }

  virsh(args: readonly string[], timeoutMs = 60_000) {
    return run("virsh", ["-c", this.host.uri, ...args], { timeoutMs });
  }

  async state(): Promise<string> {
    const r = await run("virsh", ["-c", this.host.uri, "domstate", this.name], { allowFailure: true });
    return r.exitCode === 0 ? r.stdout.trim() : "undefined";
  }

  async start(): Promise<void> {
    await this.virsh(["start", this.name]);
  }

  /** Starts and waits until the guest agent answers. */
  async boot(timeoutMs = 120_000): Promise<void> {
    await this.start();
    await this.waitForAgent(timeoutMs);
  }

  /** Raw guest-agent command; throws if the agent does not answer within timeoutS. */
  async agentCommand<T = unknown>(execute: string, args?: unknown, timeoutS = 10): Promise<T> {
    const cmd = JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
    const r = await run(
      "virsh",
      ["-c", this.host.uri, "qemu-agent-command", this.name, cmd, "--timeout", String(timeoutS)],
      { timeoutMs: (timeoutS + 15) * 1000 },
    );
    return (JSON.parse(r.stdout) as { return: T }).return;
  }

  async pingAgent(): Promise<boolean> {
    const r = await run(
      "virsh",
      ["-c", this.host.uri, "qemu-agent-command", this.name, '{"execute":"guest-ping"}', "--timeout", "1"],
      { allowFailure: true, timeoutMs: 15_000 },
    );
    return r.exitCode === 0;
  }

  /** Waits for guest-ping to answer; on timeout the error carries the domain state and console tail. */
  async waitForAgent(timeoutMs = 120_000): Promise<void> {
    await waitFor(
      `the guest agent of ${this.name} on ${this.host.name}`,
      async () => ((await this.pingAgent()) ? true : undefined),
      {
        timeoutMs,
        intervalMs: 200,
        describe: async () =>
          `domain state: ${await this.state()}\nconsole (last lines):\n${await this.consoleTail()}`,
      },
    );
  }

  async consoleTail(lines = 15): Promise<string> {
    const text = await readFile(this.consoleLog, "utf8").catch(() => "(no console log)");
    return text.split("\n").slice(-lines).join("\n");
  }

  /** Runs argv in the guest via guest-exec and waits for it (bounded). */
  async exec(argv: readonly string[], timeoutMs = 60_000): Promise<GuestExecResult> {
    const [path, ...arg] = argv;
    const { pid } = await this.agentCommand<{ pid: number }>("guest-exec", {
      path,
      arg,
      "capture-output": true,
    });
    const st = await waitFor(
      `guest command ${argv.join(" ")} in ${this.name}`,
      async () => {
        const s = await this.agentCommand<{
          exited: boolean;
          exitcode?: number;
          signal?: number;
          "out-data"?: string;
          "err-data"?: string;
        }>("guest-exec-status", { pid });
        return s.exited ? s : undefined;
      },
      { timeoutMs, intervalMs: 50 },
    );
    return {
      exitCode: st.exitcode ?? (st.signal ? 128 + st.signal : -1),
      stdout: Buffer.from(st["out-data"] ?? "", "base64").toString(),
      stderr: Buffer.from(st["err-data"] ?? "", "base64").toString(),
    };
  }

  /** A fixed script with positional arguments: values never become shell syntax. */
  async sh(script: string, args: readonly (string | number)[] = [], timeoutMs = 60_000): Promise<string> {
    const r = await this.exec(["/bin/sh", "-c", script, "sh", ...args.map(String)], timeoutMs);
    if (r.exitCode !== 0)
      throw new LabError(`guest script failed (exit ${r.exitCode}): ${script}\n${r.stderr}`);
    return r.stdout;
  }

  /** Fills [offset, offset+length) of a guest block device with one byte value; 4 KiB aligned. */
  async writePattern(device: string, offset: number, length: number, byte: number): Promise<void> {
    assertAligned(offset, length);
    const octal = `\\${byte.toString(8).padStart(3, "0")}`;
    await this.sh(
      'head -c "$1" /dev/zero | tr "\\000" "$2" | dd of="$3" bs=4096 seek="$4" conv=notrunc,fsync 2>/dev/null',
      [length, octal, device, offset / 4096],
    );
  }

  /** Fills a range with random bytes and returns their SHA-256 (as read back from the device). */
  async writeRandom(device: string, offset: number, length: number): Promise<string> {
    assertAligned(offset, length);
    await this.sh('head -c "$1" /dev/urandom | dd of="$2" bs=4096 seek="$3" conv=notrunc,fsync 2>/dev/null', [
      length,
      device,
      offset / 4096,
    ]);
    return this.hashRange(device, offset, length);
  }

  /** SHA-256 of a whole guest block device, read inside the guest. */
  async deviceHash(device: string, timeoutMs = 180_000): Promise<string> {
    return (
      (await this.sh('dd if="$1" bs=1M 2>/dev/null | sha256sum', [device], timeoutMs)).split(/\s+/)[0] ?? ""
    );
  }

  /** SHA-256 of [offset, offset+length) of a guest block device or file, read inside the guest. */
  async hashRange(path: string, offset: number, length: number): Promise<string> {
    assertAligned(offset, length);
    const out = await this.sh('dd if="$1" bs=4096 skip="$2" count="$3" 2>/dev/null | sha256sum', [
      path,
      offset / 4096,
      length / 4096,
    ]);
    return out.split(/\s+/)[0] ?? "";
  }

  async writeFile(path: string, content: string): Promise<void> {
    const { handle } = { handle: await this.agentCommand<number>("guest-file-open", { path, mode: "w" }) };
    try {
      await this.agentCommand("guest-file-write", {
        handle,
        "buf-b64": Buffer.from(content).toString("base64"),
      });
      await this.agentCommand("guest-file-flush", { handle });
    } finally {
      await this.agentCommand("guest-file-close", { handle });
    }
    await this.sh("sync");
  }

  async readFile(path: string): Promise<string> {
    const handle = await this.agentCommand<number>("guest-file-open", { path, mode: "r" });
    try {
      const r = await this.agentCommand<{ "buf-b64": string }>("guest-file-read", { handle, count: 1 << 20 });
      return Buffer.from(r["buf-b64"], "base64").toString();
    } finally {
      await this.agentCommand("guest-file-close", { handle });
    }
  }

  async fsfreeze(): Promise<number> {
    return this.agentCommand<number>("guest-fsfreeze-freeze");
  }

  async fsthaw(): Promise<number> {
    return this.agentCommand<number>("guest-fsfreeze-thaw");
  }

  async fsfreezeStatus(): Promise<"frozen" | "thawed"> {
    return this.agentCommand<"frozen" | "thawed">("guest-fsfreeze-status");
  }

  async waitState(state: string, timeoutMs: number): Promise<void> {
    await waitFor(
      `${this.name} to be ${state}`,
      async () => ((await this.state()) === state ? true : undefined),
      {
        timeoutMs,
        intervalMs: 100,
        describe: async () => `state is ${await this.state()}\nconsole:\n${await this.consoleTail()}`,
      },
    );
  }

  /** ACPI power button; the guest syncs and powers off. */
  async shutdown(timeoutMs = 60_000): Promise<void> {
    await this.virsh(["shutdown", this.name]);
    await this.waitState("shut off", timeoutMs);
  }

  async qemuPid(): Promise<number> {
    const pid = await readPid(join(this.host.qemuRunDir, `${this.name}.pid`));
    if (!pid || !isAlive(pid)) throw new LabError(`${this.name} has no running QEMU process`);
    return pid;
  }

  /** Crash: SIGKILL the QEMU process, as a host-side crash would. */
  async crash(timeoutMs = 30_000): Promise<void> {
    process.kill(await this.qemuPid(), "SIGKILL");
    await this.waitState("shut off", timeoutMs);
  }

  async destroy(): Promise<void> {
    if ((await this.state()) !== "shut off") await this.virsh(["destroy", this.name]);
  }

  async undefine(): Promise<void> {
    await run(
      "virsh",
      [
        "-c",
        this.host.uri,
        "undefine",
        this.name,
        "--checkpoints-metadata",
        "--snapshots-metadata",
        "--nvram",
      ],
      { allowFailure: true },
    );
  }

  /** Destroys, undefines and deletes the disks; safe to call in any state, and twice. */
  async dispose(): Promise<void> {
    if ((await this.state()) !== "undefined") {
      await run("virsh", ["-c", this.host.uri, "destroy", this.name], { allowFailure: true });
      await this.undefine();
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Live migration with shared storage to another lab host; the VM object follows it. */
  /**
   * Live migration to `to`. `keepSource`: without --undefinesource, so the source host keeps an
   * inactive definition of the same disks (as an operator's migration often does).
   */
  async migrate(to: LabHost, timeoutMs = 180_000, opts: { keepSource?: boolean } = {}): Promise<void> {
    const port = await freePort(to.migrationPorts);
    await run(
      "virsh",
      [
        "-c",
        this.host.uri,
        "migrate",
        "--live",
        "--persistent",
        ...(opts.keepSource ? [] : ["--undefinesource"]),
        // --unsafe: the disks sit on one local filesystem both hosts see, not a cluster filesystem.
        "--unsafe",
        this.name,
        to.uri,
        "--migrateuri",
        `tcp://127.0.0.1:${port}`,
      ],
      { timeoutMs },
    );
    this.host = to;
  }

  /** Bytes of a disk image as the host sees it (VM shut off), converted to raw. */
  async readImage(target: string, offset: number, length: number): Promise<Buffer> {
    const disk = this.disks.find((d) => d.target === target);
    if (!disk) throw new LabError(`${this.name} has no disk ${target}`);
    const raw = join(this.dir, `${target}.read.raw`);
    // Convert only the slice: the raw driver's offset/size over the image's own format driver.
    const slice = JSON.stringify({
      driver: "raw",
      offset,
      size: length,
      file: { driver: disk.format, file: { driver: "file", filename: disk.path } },
    });
    await run("qemu-img", ["convert", "-U", "-O", "raw", `json:${slice}`, raw], { timeoutMs: 300_000 });
    const fh = await open(raw, "r");
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
      await rm(raw, { force: true });
    }
  }
}

export function sha256(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

function assertAligned(offset: number, length: number): void {
  if (offset % 4096 !== 0 || length % 4096 !== 0 || length <= 0) {
    throw new LabError(`guest I/O helpers need 4 KiB-aligned offset and length (got ${offset}, ${length})`);
  }
}
