import { existsSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupRequest } from "../../agent/src/backup/BackupRequest.js";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import { isCairnError } from "../../shared/src/errors/CairnError.js";
import { agentBackupArgs, cairnCli } from "../support/cairnCli.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";

const MiB = 1024 * 1024;
const lab = new Lab();
let h: Awaited<ReturnType<typeof agentHarness>>;
let n = 0;
const sig = () => AbortSignal.timeout(30_000);

const backup = (vm: LabVm, mode: BackupRequest["mode"], extra: Partial<BackupRequest> = {}) =>
  runBackup(h.deps, h.config, {
    jobId: `f-${++n}`,
    domain: vm.name,
    mode,
    quiesce: "preferred",
    signal: AbortSignal.timeout(240_000),
    ...extra,
  });

/** Nothing of a job may be left: no libvirt job, no job directory, guest thawed. */
async function expectClean(vm: LabVm) {
  expect(await h.deps.hypervisor.backupJob(vm.name, sig())).toBeUndefined();
  const jobs = join(h.config.workDir, "jobs");
  expect(existsSync(jobs) ? await readdir(jobs) : []).toEqual([]);
  if (await vm.pingAgent()) expect(await vm.fsfreezeStatus()).toBe("thawed");
}

beforeAll(async () => {
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
});
afterAll(async () => {
  await lab.dispose();
  await h?.dispose();
});

describe("backup faults on real VMs", () => {
  it("kill -9 of the agent mid-read: VM keeps running thawed, the next run cleans up and continues the chain", async () => {
    const vm = await lab.createVm({
      label: "kill",
      disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 768, randomMiB: 512 }],
    });
    await vm.boot();
    const config = join(h.dir, "agent-kill.yaml");
    await writeFile(config, `stateDir: ${join(h.dir, "state-kill")}\nlogLevel: silent\n`);
    const cli = (args: string[]) =>
      cairnCli([...agentBackupArgs(vm.name, join(h.dir, "repo"), config), ...args]);
    const first = await cli(["--mode", "full", "--json", "--progress", "none"]);
    expect(first.exitCode, first.stderr).toBe(0);
    const s1 = JSON.parse(first.stdout).snapshot;

    // Second full backup, killed as soon as it reads.
    const child = cli(["--mode", "full", "--progress", "json"]);
    let killedReading = false;
    child.stderr?.on("data", (b: Buffer) => {
      if (!killedReading && b.toString().includes('"state":"reading"')) {
        killedReading = true;
        child.kill("SIGKILL");
      }
    });
    const r = await child;
    expect(killedReading, r.stderr).toBe(true);
    expect(r.signal).toBe("SIGKILL");
    // The VM runs, thawed; libvirt still holds the dead agent's backup job.
    expect(await vm.state()).toBe("running");
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    expect(await h.deps.hypervisor.backupJob(vm.name, sig())).toBeDefined();

    await vm.writePattern("/dev/vdb", 600 * MiB, MiB, 0x77);
    const next = await cli(["--mode", "auto", "--json", "--progress", "none"]);
    expect(next.exitCode, next.stderr).toBe(0);
    const s3 = JSON.parse(next.stdout).snapshot;
    const vdb = s3.disks.find((d: { target: string }) => d.target === "vdb");
    expect(vdb.kind).toBe("incremental"); // the chain from the first backup continues
    expect(vdb.parentSnapshot).toBe(s1.id);
    expect(vdb.stats.bytesRead).toBe(MiB);
    expect(await h.deps.hypervisor.backupJob(vm.name, sig())).toBeUndefined();
    expect(await readdir(join(h.dir, "state-kill", "work", "jobs"))).toEqual([]);
    // The restore point equals the guest disk.
    const { Repository } = await import("../../shared/src/repository/Repository.js");
    const { LocalObjectStore } = await import("../../shared/src/repository/backends/LocalObjectStore.js");
    const repo = await Repository.open(new LocalObjectStore(join(h.dir, "repo")));
    try {
      expect(await h.restoredHash(s3.id, "vdb", repo)).toBe(await vm.deviceHash("/dev/vdb"));
    } finally {
      await repo.close();
    }
    await vm.dispose();
  });

  it("no guest agent: crash-consistent with the reason when preferred, refused when required", async () => {
    const vm = await lab.createVm({ label: "noga", disks: [{ kind: "ext4-data" }], guestAgent: false });
    await vm.start();
    const r = await backup(vm, "auto");
    expect(r.manifest.consistency).toEqual({
      kind: "crash-consistent",
      reason: "the domain has no guest agent channel",
    });
    const err = await backup(vm, "auto", { quiesce: "required" }).catch((e: unknown) => e);
    expect(
      isCairnError(err, "failed-precondition") &&
        /cannot quiesce .*no guest agent channel/.test((err as Error).message),
      String(err),
    ).toBe(true);
    await expectClean(vm);
    // The refused attempt created no checkpoint: only the first backup's.
    expect((await h.deps.hypervisor.listCheckpoints(vm.name, sig())).map((c) => c.name)).toEqual([
      r.plan.newCheckpoint,
    ]);
    await vm.dispose();
  });

  it("a failing pre-freeze hook fails the job clearly; the guest was never frozen and nothing is left", async () => {
    const vm = await lab.createVm({ label: "hook", disks: [{ kind: "ext4-data" }] });
    await vm.boot();
    const err = await backup(vm, "auto", {
      quiesce: "required",
      hooks: { preFreeze: ["/bin/sh", "-c", "echo db flush failed >&2; exit 3"] },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /pre-freeze hook \/bin\/sh -c .* failed in .* \(exit 3\): db flush failed/,
    );
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    expect(await h.deps.hypervisor.listCheckpoints(vm.name, sig())).toEqual([]);
    await expectClean(vm);
    // A working hook runs before the freeze and the backup is quiesced.
    const ok = await backup(vm, "auto", {
      quiesce: "required",
      hooks: { preFreeze: ["/bin/sh", "-c", "sync"], postThaw: ["/bin/true"] },
    });
    expect(ok.manifest.consistency.kind).toBe("quiesced");
    await vm.dispose();
  });

  it("the guest shuts down mid-backup: the job fails cleanly and the chain stays valid", async () => {
    const vm = await lab.createVm({
      label: "down",
      disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 512, randomMiB: 384 }],
    });
    await vm.boot();
    const s1 = await backup(vm, "full");
    await vm.writePattern("/dev/vdb", 500 * MiB, MiB, 0x42);
    // Slow reads (one small request at a time) so the shutdown lands mid-read.
    const slow = { ...h.config, nbdDepth: 1, nbdRequestSize: 64 * 1024 };
    const err = await runBackup(h.deps, slow, {
      jobId: `f-${++n}`,
      domain: vm.name,
      mode: "full",
      quiesce: "preferred",
      signal: AbortSignal.timeout(240_000),
      onState: (s) => {
        if (s === "reading") void vm.exec(["/bin/busybox", "poweroff", "-f"]).catch(() => {});
      },
    }).catch((e: unknown) => e);
    expect(isCairnError(err), String(err)).toBe(true);
    await vm.waitState("shut off", 60_000);
    expect(existsSync(join(h.config.workDir, "jobs", `f-${n}`))).toBe(false);
    const cps = await h.deps.hypervisor.listCheckpoints(vm.name, sig());
    expect(cps.map((c) => c.name)).toEqual([s1.plan.newCheckpoint]); // the failed attempt's checkpoint is gone
    await vm.boot();
    const s3 = await backup(vm, "auto");
    const vdb = s3.manifest.disks.find((d) => d.target === "vdb")!;
    expect(vdb).toMatchObject({ kind: "incremental", parentSnapshot: s1.manifest.id });
    expect(await h.restoredHash(s3.manifest.id, "vdb")).toBe(await vm.deviceHash("/dev/vdb"));
    await vm.dispose();
  });

  it("QEMU killed (host crash): the next backup reads the affected disks in full and says why, then chains again", async () => {
    const vm = await lab.createVm({
      label: "crash",
      disks: [
        { kind: "ext4-data" },
        { kind: "blank", format: "qcow2", sizeMiB: 64 },
        { kind: "blank", format: "raw", sizeMiB: 16 },
      ],
    });
    await vm.boot();
    const s1 = await backup(vm, "auto");
    await vm.writePattern("/dev/vdb", 8 * MiB, MiB, 0x21);
    await vm.crash();
    await vm.boot();
    await vm.writePattern("/dev/vdb", 16 * MiB, MiB, 0x22);
    const s2 = await backup(vm, "auto");
    const kinds = Object.fromEntries(s2.manifest.disks.map((d) => [d.target, [d.kind, d.fullReason]]));
    expect(kinds["vdb"]?.[0]).toBe("full");
    expect(kinds["vdb"]?.[1]).toMatch(/dirty bitmap .* of vdb is (missing|inconsistent)/);
    expect(kinds["vdc"]?.[1]).toMatch(/raw-format/);
    const liveAfter = await h.deps.hypervisor.liveBitmaps(vm.name, sig());
    expect([...liveAfter.values()].flat().every((b) => !b.inconsistent)).toBe(true);
    expect(await h.restoredHash(s2.manifest.id, "vdb")).toBe(await vm.deviceHash("/dev/vdb"));
    // The broken checkpoint is gone; the next backup is incremental again.
    expect((await h.deps.hypervisor.listCheckpoints(vm.name, sig())).map((c) => c.name)).not.toContain(
      s1.plan.newCheckpoint,
    );
    await vm.writePattern("/dev/vdb", 24 * MiB, MiB, 0x23);
    const s3 = await backup(vm, "auto");
    expect(s3.manifest.disks.find((d) => d.target === "vdb")).toMatchObject({
      kind: "incremental",
      parentSnapshot: s2.manifest.id,
    });
    expect(s3.manifest.disks.find((d) => d.target === "vdb")?.stats.bytesRead).toBe(MiB);
    await vm.dispose();
  });

  it("QEMU killed after its bitmaps were persisted once: they load inconsistent, the disk is read in full and the chain resumes", async () => {
    const vm = await lab.createVm({
      label: "incons",
      disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 64 }],
    });
    await vm.boot();
    const s1 = await backup(vm, "auto");
    // A clean shutdown writes the bitmaps into the qcow2; the next start loads them marked in-use,
    // so a kill now leaves them inconsistent in the image (not merely missing, as a kill before).
    await vm.shutdown();
    await vm.boot();
    await vm.writePattern("/dev/vdb", 4 * MiB, MiB, 0x31);
    await vm.crash();
    await vm.boot();
    const before = await h.deps.hypervisor.liveBitmaps(vm.name, sig());
    expect([...before.values()].flat().some((b) => b.inconsistent)).toBe(true);
    await vm.writePattern("/dev/vdb", 12 * MiB, MiB, 0x32);
    const s2 = await backup(vm, "auto");
    const vdb = s2.manifest.disks.find((d) => d.target === "vdb");
    expect(vdb?.kind).toBe("full");
    expect(vdb?.fullReason).toMatch(/inconsistent/);
    expect(await h.restoredHash(s2.manifest.id, "vdb")).toBe(await vm.deviceHash("/dev/vdb"));
    expect((await h.deps.hypervisor.listCheckpoints(vm.name, sig())).map((c) => c.name)).not.toContain(
      s1.plan.newCheckpoint,
    );
    await vm.writePattern("/dev/vdb", 20 * MiB, MiB, 0x33);
    const s3 = await backup(vm, "auto");
    expect(s3.manifest.disks.find((d) => d.target === "vdb")).toMatchObject({
      kind: "incremental",
      parentSnapshot: s2.manifest.id,
    });
    await vm.dispose();
  });
});
