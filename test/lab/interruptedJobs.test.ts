import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { createChannel, createClient } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentServiceDefinition } from "../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../shared/src/grpc/wire/backupJobState.js";
import { agentBackupArgs, cairnCli } from "../support/cairnCli.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { REPO_ROOT } from "./support/labPaths.js";
import { run, waitFor } from "./support/run.js";

/**
 * Backups whose process dies (kill -9) while a cairn-agent daemon shares their work dir: the daemon
 * cleans up a dead local CLI's live job within seconds, and its startup recovery undoes a killed
 * offline backup (orphan qemu-nbd, added bitmaps). One VM, one daemon config shared with the CLI.
 */
const MiB = 1024 * 1024;
const lab = new Lab();
let h: Awaited<ReturnType<typeof agentHarness>>;
let vm: LabVm;
let daemon: ResultPromise | undefined;
/** The un-enrolled daemon serves only its unix socket (unix://<stateDir>/agent.sock). */
let target = "";
let config = "";
/** The daemon's log (stdout), shown when a wait for it times out. */
let daemonLog = "";
const sig = () => AbortSignal.timeout(30_000);
const stateDir = () => join(h.dir, "state");
const jobDirs = () => readdir(join(stateDir(), "work", "jobs")).catch(() => [] as string[]);

async function startDaemon(): Promise<void> {
  const d = execa("node", ["--import", "tsx", join(REPO_ROOT, "agent/src/main.ts"), "--config", config], {
    cwd: REPO_ROOT,
    reject: false,
    stderr: process.env.CAIRN_TEST_LOG ? "inherit" : "ignore",
  });
  daemon = d;
  target = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("agent did not start within 60 s")), 60_000);
    d.stdout?.on("data", (b: Buffer) => {
      daemonLog += b.toString();
      const m = /listening on unix socket (\S+)/.exec(b.toString());
      if (m) {
        clearTimeout(t);
        resolve(`unix://${m[1]}`);
      }
    });
    void d.then((r) => reject(new Error(`agent exited ${r.exitCode}`)));
  });
}

/** `cairn agent backup` with the daemon's config (same work dir). */
function cli(args: string[]) {
  return cairnCli([...agentBackupArgs(vm.name, join(h.dir, "repo"), config), ...args]);
}

async function cliBackup(mode: string) {
  const r = await cli(["--mode", mode, "--json", "--progress", "none"]);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout).snapshot as {
    id: string;
    disks: { target: string; kind: string; parentSnapshot?: string; stats: { bytesRead: number } }[];
  };
}

/** The bitmaps stored in the data disk's image, read without its lock. */
async function imageBitmaps(): Promise<unknown> {
  const info = JSON.parse((await run("qemu-img", ["info", "-U", "--output=json", vm.disks[1]!.path])).stdout);
  return info["format-specific"]?.data?.bitmaps ?? [];
}

/** qemu-nbd processes serving a socket under the agent's state dir. */
async function qemuNbds(): Promise<string> {
  return (await run("pgrep", ["-af", `qemu-nbd.*${stateDir()}`], { allowFailure: true })).stdout.trim();
}

beforeAll(async () => {
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
  config = join(h.dir, "agent.yaml");
  await writeFile(
    config,
    `stateDir: ${stateDir()}\nlisten: 127.0.0.1:0\nlogLevel: ${process.env.CAIRN_TEST_LOG ?? "warn"}\n`,
  );
  vm = await lab.createVm({
    label: "intr",
    disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 192, randomMiB: 160 }],
  });
  await vm.boot();
  await startDaemon();
});
afterAll(async () => {
  daemon?.kill("SIGKILL");
  await daemon;
  // A failed run may leave the dead agent's qemu-nbd (this file's state dir only) holding the image.
  for (const line of h ? (await qemuNbds()).split("\n") : []) {
    const pid = Number.parseInt(line, 10);
    if (pid > 0) process.kill(pid, "SIGKILL");
  }
  await lab.dispose();
  await h?.dispose();
});

describe("interrupted backups with a daemon running", () => {
  let last = "";

  it("a local CLI backup killed -9 mid-read: the daemon ends its libvirt job within seconds; the chain continues", async () => {
    const s1 = await cliBackup("full");
    const cpsAfterFull = await h.deps.hypervisor.listCheckpoints(vm.name, sig());

    const child = cli(["--mode", "full", "--progress", "json"]);
    let killedAt = 0;
    child.stderr?.on("data", (b: Buffer) => {
      if (!killedAt && b.toString().includes('"state":"reading"')) {
        killedAt = Date.now();
        child.kill("SIGKILL");
      }
    });
    const r = await child;
    expect(killedAt, r.stderr).toBeGreaterThan(0);
    expect(r.signal).toBe("SIGKILL");

    // No other Cairn run: the daemon alone must notice the dead owner and clean up.
    await waitFor(
      "the daemon to end the dead CLI's backup job",
      async () =>
        (await h.deps.hypervisor.backupJob(vm.name, sig())) === undefined && (await jobDirs()).length === 0
          ? true
          : undefined,
      {
        timeoutMs: 10_000,
        intervalMs: 200,
        describe: async () => `jobs: ${(await jobDirs()).join(" ")}\ndaemon log:\n${daemonLog.slice(-3000)}`,
      },
    );
    const cleanedMs = Date.now() - killedAt;
    console.log(`[lab] dead CLI's backup job cleaned up ${cleanedMs} ms after the kill`);
    expect(cleanedMs).toBeLessThan(5_000);
    // The unsealed attempt's checkpoint is gone; the full's remains.
    expect(await h.deps.hypervisor.listCheckpoints(vm.name, sig())).toEqual(cpsAfterFull);
    expect(await vm.state()).toBe("running");

    await vm.writePattern("/dev/vdb", 170 * MiB, MiB, 0x71);
    const s3 = await cliBackup("auto");
    const vdb = s3.disks.find((d) => d.target === "vdb")!;
    expect(vdb).toMatchObject({ kind: "incremental", parentSnapshot: s1.id });
    expect(vdb.stats.bytesRead).toBe(MiB);
    last = s3.id;
  });

  it("the daemon killed -9 mid offline backup: restarted, it ends the orphan qemu-nbd and undoes the bitmaps; the VM starts", async () => {
    await vm.shutdown();
    const before = await imageBitmaps();
    const cpsBefore = await h.deps.hypervisor.listCheckpoints(vm.name, sig());
    const uuid = (await vm.virsh(["domuuid", vm.name])).stdout.trim();

    const client = createClient(AgentServiceDefinition, createChannel(target));
    let killed = false;
    await (async () => {
      for await (const e of client.runBackup({
        jobId: "intr-offline",
        domainUuid: uuid,
        repository: join(h.dir, "repo"),
        mode: BackupMode.BACKUP_MODE_FULL,
      })) {
        if (e.event?.$case === "jobState" && backupJobState.nameOf(e.event.value) === "reading") {
          killed = true;
          daemon?.kill("SIGKILL");
        }
      }
    })().catch(() => {});
    expect(killed).toBe(true);
    await daemon;
    // What a dead agent leaves: qemu-nbd --persistent still holds the image.
    expect(await qemuNbds()).not.toBe("");

    await startDaemon(); // startup recovery
    expect(await qemuNbds()).toBe("");
    expect(await jobDirs()).toEqual([]);
    expect(await imageBitmaps()).toEqual(before);
    expect(await h.deps.hypervisor.listCheckpoints(vm.name, sig())).toEqual(cpsBefore);

    await vm.boot();
    await vm.writePattern("/dev/vdb", 100 * MiB, MiB, 0x72);
    const next = await cliBackup("auto");
    const vdb = next.disks.find((d) => d.target === "vdb")!;
    expect(vdb).toMatchObject({ kind: "incremental", parentSnapshot: last });
    expect(vdb.stats.bytesRead).toBe(MiB);
  });
});
