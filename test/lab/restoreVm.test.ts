import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import { JobRegistry } from "../../agent/src/jobs/JobRegistry.js";
import { LibvirtRestoreHost } from "../../agent/src/restore/LibvirtRestoreHost.js";
import { lookupOwner } from "../../agent/src/restore/lookupOwner.js";
import type { RestoreHost } from "../../agent/src/restore/RestoreHost.js";
import { type RunningAgentServer, startAgentServer } from "../../agent/src/server/startAgentServer.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import {
  AgentServiceDefinition,
  type RestoreVmRequest,
  type RestoreVmResponse,
} from "../../shared/src/gen/cairn/v1/agent.js";
import type { RestoreVmResult } from "../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { slowedStore } from "../support/slowedStore.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { LAB_DOMAIN_PREFIX } from "./support/labPaths.js";
import { run, waitFor } from "./support/run.js";

// AgentService.RestoreVm on the lab's real libvirt: a backed-up lab VM restored under new names,
// to another directory (qcow2 and raw), to a dir pool and in place, booted to a guest-agent ping.
const lab = new Lab();
let h: Awaited<ReturnType<typeof agentHarness>>;
let vm: LabVm;
let snapshotId: string;
let agent: RunningAgentServer;
/** What the agent's RestoreHost does; a test may make one of its steps fail. */
let failStart: string | undefined;
/** Milliseconds every repository read waits (the abort test slows restores down). */
let readDelayMs = 0;
const created: string[] = [];
/** swtpm state directories and NVRAM files the tests made outside the harness directory. */
const leftovers: string[] = [];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const pools: string[] = [];
const MARKER = `restored-${Date.now()}`;
const uri = () => lab.host1.uri;
const virsh = (args: string[], allowFailure = false) =>
  run("virsh", ["-c", uri(), ...args], { allowFailure, timeoutMs: 120_000 });
const repoPath = () => join(h.dir, "repo");

beforeAll(async () => {
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
  vm = await lab.createVm({ label: "rst", disks: [{ kind: "ext4-data" }] });
  await vm.boot();
  await vm.writeFile("/data/marker", MARKER);
  await vm.shutdown();
  const r = await runBackup(h.deps, h.config, {
    jobId: "rst-1",
    domain: vm.name,
    mode: "full",
    quiesce: "preferred",
    signal: AbortSignal.timeout(240_000),
  });
  snapshotId = r.manifest.id;
  const real = new LibvirtRestoreHost(h.deps.hypervisor, h.pool.run);
  const host: RestoreHost = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "start")
        return async (uuid: string, signal: AbortSignal) => {
          if (failStart) throw new CairnError("failed-precondition", failStart);
          return target.start(uuid, signal);
        };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  agent = await startAgentServer(
    { listen: "127.0.0.1:0" },
    {
      hypervisor: h.deps.hypervisor,
      hostId: "lab",
      libvirtUri: uri(),
      maintenance: {
        jobs: new JobRegistry(),
        openRepository: (location) =>
          Repository.open(slowedStore(new LocalObjectStore(location), () => readDelayMs)),
      },
      restoreVm: {
        host,
        config: {
          nvramDir: "/var/lib/libvirt/qemu/nvram",
          swtpmStateDir: "/var/lib/libvirt/swtpm",
          owners: {
            nvram: { uid: h.config.qemuUid, gid: h.config.qemuGid },
            tpm: await lookupOwner("tss", "tss"),
          },
        },
        log: createLogger("restore", process.env.CAIRN_TEST_LOG ?? "silent"),
      },
    },
    createLogger("agent", "silent"),
  );
}, 600_000);

afterAll(async () => {
  await agent?.close();
  for (const name of created) {
    await virsh(["destroy", name], true);
    await virsh(["undefine", name, "--nvram"], true);
  }
  for (const p of pools) {
    await virsh(["pool-destroy", p], true);
    await virsh(["pool-undefine", p], true);
  }
  await lab.dispose();
  for (const p of leftovers) await rm(p, { recursive: true, force: true });
  await h?.dispose();
});

const client = () => createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${agent.port}`));
let jobs = 0;
async function restore(
  over: Partial<RestoreVmRequest>,
): Promise<{ result: RestoreVmResult; events: RestoreVmResponse[] }> {
  if (over.newName) created.push(over.newName);
  const events: RestoreVmResponse[] = [];
  for await (const e of client().restoreVm({
    repository: repoPath(),
    snapshotId,
    newName: "",
    destinationDir: "",
    start: false,
    jobId: `rst-vm-${++jobs}`,
    format: "",
    pool: "",
    inPlace: false,
    ...over,
  }))
    events.push(e);
  const last = events.at(-1)?.event;
  if (last?.$case !== "result") throw new Error("no result event");
  return { result: last.value, events };
}

/** A directory libvirt's QEMU can reach (it runs as another user). */
async function storage(label: string): Promise<string> {
  const d = await mkdtemp(join(h.dir, `${label}-`));
  await run("chmod", ["0711", d]);
  return d;
}

/** Whether a disk image holds exactly what the snapshot holds (qemu-img compare reads both). */
async function equalsSnapshot(path: string, format: string): Promise<boolean> {
  const raw = await h.materialize(snapshotId, "vda");
  try {
    const r = await run("qemu-img", ["compare", "-f", format, "-F", "raw", path, raw], {
      allowFailure: true,
    });
    return r.exitCode === 0;
  } finally {
    await rm(raw, { force: true });
  }
}

async function agentCommand(name: string, cmd: unknown, allowFailure = false) {
  return run("virsh", ["-c", uri(), "qemu-agent-command", name, JSON.stringify(cmd), "--timeout", "5"], {
    allowFailure,
    timeoutMs: 30_000,
  });
}

/** Waits for the restored guest's agent, then reads the marker the original wrote before its backup. */
async function bootedWithMarker(name: string): Promise<string> {
  await waitFor(
    `guest agent of ${name}`,
    async () =>
      (await agentCommand(name, { execute: "guest-ping" }, true)).exitCode === 0 ? true : undefined,
    { timeoutMs: 180_000, intervalMs: 500 },
  );
  const open = await waitFor(
    `/data/marker in ${name}`,
    async () => {
      const r = await agentCommand(
        name,
        { execute: "guest-file-open", arguments: { path: "/data/marker" } },
        true,
      );
      return r.exitCode === 0 ? (JSON.parse(r.stdout) as { return: number }).return : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  const read = await agentCommand(name, {
    execute: "guest-file-read",
    arguments: { handle: open, count: 4096 },
  });
  await agentCommand(name, { execute: "guest-file-close", arguments: { handle: open } });
  return Buffer.from(
    (JSON.parse(read.stdout) as { return: { "buf-b64": string } }).return["buf-b64"],
    "base64",
  ).toString();
}

const uuidOf = async (name: string) => (await virsh(["domuuid", name])).stdout.trim();

describe("RestoreVm on real libvirt", () => {
  it("to a new name in another directory as qcow2: the disk equals the backup; it boots with the guest's files", async () => {
    const dir = await storage("qcow2");
    const name = `${LAB_DOMAIN_PREFIX}rst-q-${jobs}`;
    const { result, events } = await restore({ newName: name, destinationDir: dir, format: "qcow2" });
    const path = join(dir, `${name}-vda.qcow2`);
    expect(result).toMatchObject({ domainName: name, started: false, inPlace: false });
    expect(result.disks).toEqual([
      { target: "vda", path, format: "qcow2", bytesWritten: expect.any(BigInt), pool: "", volume: "" },
    ]);
    expect(events.some((e) => e.event?.$case === "progress" && e.event.value.phase === "write")).toBe(true);
    expect(result.domainUuid).toBe(await uuidOf(name));
    expect(result.domainUuid).not.toBe(await uuidOf(vm.name));
    const xml = (await virsh(["dumpxml", "--inactive", name])).stdout;
    expect(xml).toContain(`<source file='${path}'/>`);
    expect(xml).toContain("<driver name='qemu' type='qcow2'");
    expect(xml).not.toContain(vm.disks[0]!.path);
    expect(await equalsSnapshot(path, "qcow2")).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await virsh(["start", name]);
    expect(await bootedWithMarker(name)).toBe(MARKER);
    await virsh(["destroy", name]);
  });

  it("as raw with start: started by the restore, guest-agent ping, the guest's files present", async () => {
    const dir = await storage("raw");
    const name = `${LAB_DOMAIN_PREFIX}rst-r-${jobs}`;
    const { result } = await restore({ newName: name, destinationDir: dir, format: "raw", start: true });
    expect(result).toMatchObject({ domainName: name, started: true });
    expect(result.disks[0]?.path).toBe(join(dir, `${name}-vda.raw`));
    expect((await virsh(["domblklist", name])).stdout).toContain(join(dir, `${name}-vda.raw`));
    expect(await bootedWithMarker(name)).toBe(MARKER);
    await virsh(["destroy", name]);
  });

  it("to a dir pool: a volume <name>-vda.qcow2 written by the engine, listed by the pool", async () => {
    const dir = await storage("pool");
    const pool = `${LAB_DOMAIN_PREFIX}pool-${jobs}`;
    pools.push(pool);
    await virsh(["pool-define-as", pool, "dir", "--target", dir]);
    await virsh(["pool-start", pool]);
    const name = `${LAB_DOMAIN_PREFIX}rst-p-${jobs}`;
    const { result } = await restore({ newName: name, pool });
    const volume = `${name}-vda.qcow2`;
    expect(result.disks).toEqual([
      {
        target: "vda",
        path: join(dir, volume),
        format: "qcow2",
        bytesWritten: expect.any(BigInt),
        pool,
        volume,
      },
    ]);
    await virsh(["pool-refresh", pool]);
    expect((await virsh(["vol-list", pool])).stdout).toContain(volume);
    expect(await equalsSnapshot(join(dir, volume), "qcow2")).toBe(true);
    await virsh(["start", name]);
    expect(await bootedWithMarker(name)).toBe(MARKER);
    await virsh(["destroy", name]);
  });

  it("refuses a name that exists, writing nothing", async () => {
    const dir = await storage("taken");
    await expect(restore({ newName: vm.name, destinationDir: dir })).rejects.toMatchObject({
      code: Status.ALREADY_EXISTS,
      details: expect.stringContaining(`a domain named ${vm.name} exists on this host`),
    });
    created.pop(); // the original: disposed by the lab
    expect(await readdir(dir)).toEqual([]);
  });

  it("a failure after the disks were written takes everything back: files removed, domain undefined", async () => {
    const dir = await storage("undo");
    const name = `${LAB_DOMAIN_PREFIX}rst-u-${jobs}`;
    failStart = "injected start failure";
    try {
      await expect(restore({ newName: name, destinationDir: dir, start: true })).rejects.toMatchObject({
        details: expect.stringContaining("injected start failure"),
      });
    } finally {
      failStart = undefined;
    }
    expect(await readdir(dir)).toEqual([]);
    expect((await virsh(["domstate", name], true)).exitCode).not.toBe(0);
  });

  it("AbortJob while its disks are written: the stream ends cancelled, nothing is left", async () => {
    const dir = await storage("abort");
    const name = `${LAB_DOMAIN_PREFIX}rst-a-${jobs}`;
    created.push(name);
    readDelayMs = 100;
    try {
      const jobId = `rst-vm-abort-${jobs}`;
      const stream = client().restoreVm({
        repository: repoPath(),
        snapshotId,
        newName: name,
        destinationDir: dir,
        start: true,
        jobId,
        format: "qcow2",
        pool: "",
        inPlace: false,
      });
      let aborted = false;
      const ended = (async () => {
        for await (const e of stream) {
          if (!aborted && e.event?.$case === "progress" && e.event.value.phase === "write") {
            aborted = true;
            expect((await client().abortJob({ jobId, reason: "test" })).found).toBe(true);
          }
        }
      })();
      await expect(ended).rejects.toMatchObject({ code: Status.CANCELLED });
      expect(aborted).toBe(true);
    } finally {
      readDelayMs = 0;
    }
    expect(await readdir(dir)).toEqual([]);
    expect((await virsh(["domstate", name], true)).exitCode).not.toBe(0);
  });

  it("in place over the shut-off original: its disk is put back, its definition and uuid kept", async () => {
    const disk = vm.disks[0]!;
    const before = (await virsh(["dumpxml", "--inactive", vm.name])).stdout;
    // The guest's disk changed after the backup.
    await run("qemu-io", ["-f", disk.format, "-c", "write -P 0xab 0 4M", disk.path]);
    expect(await equalsSnapshot(disk.path, disk.format)).toBe(false);
    await vm.start();
    await expect(restore({ inPlace: true })).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(/is running; an in-place restore needs it shut off/),
    });
    await vm.destroy();
    // The backup left its checkpoint: the restore must not leave it describing the new disks.
    expect((await virsh(["checkpoint-list", vm.name, "--name"])).stdout.trim()).not.toBe("");
    const { result } = await restore({ inPlace: true });
    expect(result).toMatchObject({ domainName: vm.name, inPlace: true, started: false });
    expect(result.domainUuid).toBe(await uuidOf(vm.name));
    expect(result.disks.map((d) => [d.path, d.format])).toEqual([[disk.path, disk.format]]);
    expect(await equalsSnapshot(disk.path, disk.format)).toBe(true);
    expect((await virsh(["dumpxml", "--inactive", vm.name])).stdout).toBe(before);
    // No checkpoint describes the disks that were put back.
    expect((await virsh(["checkpoint-list", vm.name, "--name"])).stdout.trim()).toBe("");
    await vm.boot();
    expect(await vm.readFile("/data/marker")).toBe(MARKER);
    await vm.destroy();
  });

  it("NVRAM and TPM state go where libvirt expects them for the new domain, owned as it runs them, modes masked; a missing loader is refused first", async () => {
    const loader = join(h.dir, "OVMF_CODE.fd");
    const nvram = Buffer.alloc(128 * 1024, 0xff);
    randomBytes(6000).copy(nvram, 4096);
    const nvramPath = join(h.dir, `cfg-${randomBytes(3).toString("hex")}_VARS.fd`);
    await writeFile(nvramPath, nvram, { mode: 0o644 });
    await chmod(nvramPath, 0o644);
    const cfg = await lab.createVm({
      label: "rst-cfg",
      disks: [{ kind: "blank", format: "qcow2", sizeMiB: 16 }],
      uefi: { loader, nvram: nvramPath },
      tpm: true,
    });
    // Never started: lay out swtpm state as libvirt's swtpm would (mode 0640 recorded on purpose).
    const stateDir = join("/var/lib/libvirt/swtpm", await uuidOf(cfg.name));
    leftovers.push(stateDir);
    await mkdir(join(stateDir, "tpm2"), { recursive: true });
    const permall = randomBytes(3 * 4096 + 123);
    await writeFile(join(stateDir, "tpm2", "tpm2-00.permall"), permall);
    await chmod(join(stateDir, "tpm2", "tpm2-00.permall"), 0o640);
    const tss = await lookupOwner("tss", "tss");
    expect(tss, "the lab has swtpm's tss user").toBeDefined();
    const snap = await runBackup(h.deps, h.config, {
      jobId: "rst-cfg-1",
      domain: cfg.name,
      mode: "full",
      quiesce: "preferred",
      signal: AbortSignal.timeout(240_000),
    });

    const dir = await storage("cfg");
    const name = `${LAB_DOMAIN_PREFIX}rst-c-${jobs}`;
    const newNvram = `/var/lib/libvirt/qemu/nvram/${name}_VARS.fd`;
    leftovers.push(newNvram);
    // The loader the domain names is not on this host: refused, nothing written.
    await expect(
      restore({ snapshotId: snap.manifest.id, newName: name, destinationDir: dir }),
    ).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining(
        `firmware ${loader} (the domain's <loader>) does not exist on this host`,
      ),
    });
    expect(await readdir(dir)).toEqual([]);
    await expect(stat(newNvram)).rejects.toMatchObject({ code: "ENOENT" });

    await writeFile(loader, "not a firmware: the domain is only defined, never started");
    const { result } = await restore({ snapshotId: snap.manifest.id, newName: name, destinationDir: dir });
    leftovers.push(join("/var/lib/libvirt/swtpm", result.domainUuid));
    const xml = (await virsh(["dumpxml", "--inactive", name])).stdout;
    expect(xml).toContain(newNvram);
    expect(xml).not.toContain(nvramPath);
    const nv = await stat(newNvram);
    expect(sha(await readFile(newNvram))).toBe(sha(nvram));
    expect([nv.uid, nv.gid, nv.mode & 0o7777]).toEqual([h.config.qemuUid, h.config.qemuGid, 0o600]);
    const newState = join("/var/lib/libvirt/swtpm", result.domainUuid);
    const st = await stat(join(newState, "tpm2", "tpm2-00.permall"));
    expect(sha(await readFile(join(newState, "tpm2", "tpm2-00.permall")))).toBe(sha(permall));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([tss?.uid, tss?.gid, 0o600]);
    const d = await stat(newState);
    expect([d.uid, d.mode & 0o7777]).toEqual([tss?.uid, 0o700]);
    // The original's own files are untouched.
    expect(sha(await readFile(nvramPath))).toBe(sha(nvram));
    expect(sha(await readFile(join(stateDir, "tpm2", "tpm2-00.permall")))).toBe(sha(permall));
  });
});
