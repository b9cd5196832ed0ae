import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { cairnCli, coordinatorArgs } from "../support/cairnCli.js";
import { eventually, type TestCoordinator, waitForJobEnd } from "../support/coordinatorHarness.js";
import type { LabAgent } from "./support/LabAgent.js";
import type { LabHost } from "./support/LabHost.js";
import type { LabVm } from "./support/LabVm.js";
import { LedgerLab } from "./support/LedgerLab.js";

const MiB = 1024 * 1024;

// Two real libvirt hosts (the lab's second libvirtd), one real agent daemon on each, one
// coordinator: the checkpoint ledger keeps a VM's chains through live migration, crash and
// interruption (docs/checkpoint-ledger.md).
describe("checkpoint ledger on two hosts", () => {
  const L = new LedgerLab();
  const lab = L.lab;
  let c: TestCoordinator;
  let host2: LabHost;
  let a: LabAgent;
  let vm: LabVm;

  const waitJob = (jobId: string) => waitForJobEnd(c, jobId);
  const backup = (mode?: BackupMode) => L.backup(mode);
  const chain = () => L.chain();
  const bytesRead = (snapshotId: string | null) => L.bytesRead(snapshotId);
  const restoreMatches = (snapshotId: string, target: string) => L.restoreMatches(snapshotId, target);
  /** The guest writes `dirty` bytes, then a full backup starts; returns once its checkpoint is pending. */
  const fullUntilPending = async (dirty: number) => {
    await vm.writeRandom("/dev/vdb", 0, dirty);
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_FULL });
    await eventually(
      "pending entry",
      async () => (await chain()).entries.some((e) => e.state === "pending"),
      60_000,
    );
    return jobId;
  };
  const define = async (host: LabHost, xml: string) => {
    const file = join(c.dir, `define-${Date.now()}.xml`);
    await writeFile(file, xml);
    await execa("virsh", ["-c", host.uri, "define", file]);
  };

  beforeAll(async () => {
    await L.start("ledger", [
      { kind: "blank", format: "qcow2", sizeMiB: 64, randomMiB: 16 },
      { kind: "blank", format: "qcow2", sizeMiB: 64, randomMiB: 16 },
    ]);
    ({ c, host2, a, vm } = L);
  }, 300_000);
  afterAll(() => L.dispose());

  it("a full backup on A commits one checkpoint per disk with libvirt's XML", async () => {
    const full = await backup(BackupMode.BACKUP_MODE_FULL);
    expect(full).toMatchObject({ state: "succeeded", hostId: "kvm-a" });
    const r = await chain();
    expect(r.entries.map((e) => [e.target, e.state, e.hostId])).toEqual([
      ["vda", "committed", "kvm-a"],
      ["vdb", "committed", "kvm-a"],
    ]);
    expect(r.disks.map((d) => d.summary)).toEqual([
      expect.stringMatching(/^vda: incremental chain of 1, last checkpoint cairn-\S+ on kvm-a$/),
      expect.stringMatching(/^vdb: incremental chain of 1, last checkpoint cairn-\S+ on kvm-a$/),
    ]);
  });

  it("live migration A→B: the chain is redefined and verified on B; the next backup runs there, incremental, reading ≈ the dirty bytes", async () => {
    const t0 = Date.now();
    await vm.migrate(host2);
    await eventually(
      "chain kept on kvm-b",
      async () => (await chain()).disks.every((d) => d.lastHostId === "kvm-b" && d.next === "incremental"),
      60_000,
    );
    console.log(`[ledger] chain kept on kvm-b ${Date.now() - t0} ms after the migration began`);
    const r = await chain();
    expect(r.events.filter((e) => e.hostId === "kvm-b").map((e) => `${e.kind}/${e.detail}`)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^(started|resumed)\/migrated$/)]),
    );
    expect(r.changes[0]?.reason).toMatch(/carried from kvm-a to kvm-b .*bitmap verified in QEMU/);
    await vm.writeRandom("/dev/vdb", 8 * MiB, 4 * MiB);
    const incr = await backup();
    expect(incr).toMatchObject({
      state: "succeeded",
      hostId: "kvm-b",
      diskKinds: { vda: "incremental", vdb: "incremental" },
    });
    const read = await bytesRead(incr.snapshotId);
    expect(read).toBeGreaterThanOrEqual(4 * MiB);
    expect(read).toBeLessThanOrEqual(4 * MiB * 1.25);
    expect(await restoreMatches(incr.snapshotId as string, "vdb")).toBe(true);
  });

  it("back B→A: the same; the job goes where the VM runs", async () => {
    await vm.migrate(lab.host1);
    await eventually(
      "chain kept on kvm-a",
      async () => (await chain()).disks.every((d) => d.lastHostId === "kvm-a" && d.next === "incremental"),
      60_000,
    );
    await vm.writeRandom("/dev/vda", 0, 2 * MiB);
    const incr = await backup();
    expect(incr).toMatchObject({
      state: "succeeded",
      hostId: "kvm-a",
      diskKinds: { vda: "incremental", vdb: "incremental" },
    });
    expect(await bytesRead(incr.snapshotId)).toBeLessThanOrEqual(2 * MiB * 1.25);
    expect(await restoreMatches(incr.snapshotId as string, "vda")).toBe(true);
  });

  it("coordinator killed mid-backup: the job is re-attached, its pending checkpoint committed, the chain goes on", async () => {
    const jobId = await fullUntilPending(8 * MiB);
    await c.restart();
    const job = await waitJob(jobId);
    expect(job.state).toBe("succeeded");
    const r = await chain();
    expect(r.entries.filter((e) => e.state === "pending")).toEqual([]);
    expect(r.entries.filter((e) => e.jobId === jobId).map((e) => e.state)).toEqual([
      "committed",
      "committed",
    ]);
    expect((await backup()).diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
  });

  it("QEMU killed on A, VM started on B: the disks whose bitmaps did not survive go full, with the reason", async () => {
    await vm.crash();
    await eventually("suspect", async () => (await chain()).disks.some((d) => d.next === "check"), 30_000);
    // The operator starts it on the other host (shared storage): define it there, start it.
    const xml = (await execa("virsh", ["-c", lab.host1.uri, "dumpxml", "--inactive", vm.name])).stdout;
    await execa("virsh", ["-c", lab.host1.uri, "undefine", "--checkpoints-metadata", vm.name]);
    await define(host2, xml);
    vm.host = host2;
    await vm.start();
    await vm.waitForAgent(120_000);
    await eventually("demoted", async () => (await chain()).disks.every((d) => d.next === "full"), 60_000);
    console.log(`[ledger] after the crash: ${(await chain()).disks.map((d) => d.summary).join(" | ")}`);
    for (const d of (await chain()).disks)
      expect(d.summary).toMatch(/will be read in full: .*(inconsistent|missing)/);
    const job = await backup();
    expect(job.hostId).toBe("kvm-b");
    for (const k of Object.values(job.diskKinds)) expect(k).toMatch(/^full: /);
    expect((await chain()).disks.every((d) => d.next === "incremental" && d.length === 1)).toBe(true);
  });

  it("a VM defined on both hosts (inactive on A, running on B): backups run on B only, whatever A reports", async () => {
    const xml = (await execa("virsh", ["-c", host2.uri, "dumpxml", "--inactive", vm.name])).stdout;
    await define(lab.host1, xml);
    await a.kill();
    await a.start(); // registers with the stale inactive definition
    await new Promise((r) => setTimeout(r, 3000));
    expect((await c.admin().listVms({ hostId: "kvm-b" })).vms.map((v) => v.name)).toContain(vm.name);
    const job = await backup();
    expect(job).toMatchObject({ state: "succeeded", hostId: "kvm-b" });
    await execa("virsh", ["-c", lab.host1.uri, "undefine", vm.name]);
  });

  it("a backup asked for while the VM migrates is deferred and runs on the destination once the migration ends", async () => {
    // Slow the migration down so the backup surely finds it running (then let it finish).
    await execa("virsh", ["-c", host2.uri, "migrate-setspeed", vm.name, "1"]);
    const migrating = vm.migrate(lab.host1);
    await eventually(
      "migration running",
      async () =>
        (await execa("virsh", ["-c", host2.uri, "domjobinfo", vm.name], { reject: false })).stdout.includes(
          "migration",
        ),
      30_000,
    );
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_INCREMENTAL });
    await eventually(
      "deferred",
      async () =>
        (await c.running.ctx.store.jobHistory(jobId)).some((h) =>
          /deferred by kvm-b: migrating/.test(h.reason),
        ),
      60_000,
    );
    await execa("virsh", ["-c", host2.uri, "migrate-setspeed", vm.name, "100000"]);
    await migrating;
    const job = await waitJob(jobId);
    expect(job).toMatchObject({ state: "succeeded", hostId: "kvm-a", attempt: 1 });
    expect(Object.values(job.diskKinds)).toEqual(["incremental", "incremental"]);
  });

  it("cairn hosts drain --wait lets the running backup finish and dispatches nothing new there", async () => {
    const jobId = await fullUntilPending(32 * MiB);
    const drained = await cairnCli([
      "hosts",
      "drain",
      "kvm-a",
      "--wait",
      "--reason",
      "patching",
      ...coordinatorArgs(c),
    ]);
    expect(drained.exitCode, drained.stderr).toBe(0);
    expect(drained.stdout).toMatch(/no backup runs there now/);
    expect(await c.running.ctx.store.getJob(jobId)).toMatchObject({ state: "succeeded", hostId: "kvm-a" });
    const { jobId: next } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_INCREMENTAL });
    await new Promise((res) => setTimeout(res, 2000));
    expect((await c.running.ctx.store.getJob(next))?.state).toBe("queued");
    await c.admin().undrainHost({ hostId: "kvm-a" });
    expect(await waitJob(next)).toMatchObject({ state: "succeeded", hostId: "kvm-a" });
  });

  it("hosts drain --abort-running ends a running backup cleanly (thawed, no libvirt job, chain valid); nothing starts there until undrain", async () => {
    const jobId = await fullUntilPending(32 * MiB);
    const r = await c.admin().drainHost({ hostId: "kvm-a", reason: "evacuate", abortRunning: true });
    expect(r.abortedJobIds).toEqual([jobId]);
    await eventually(
      "queued again",
      async () => (await c.running.ctx.store.getJob(jobId))?.state === "queued",
      60_000,
    );
    expect((await execa("virsh", ["-c", lab.host1.uri, "domjobinfo", vm.name])).stdout).toMatch(
      /Job type:\s+None/,
    );
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    expect((await chain()).entries.filter((e) => e.state === "pending")).toEqual([]);
    await new Promise((res) => setTimeout(res, 2000));
    expect((await c.running.ctx.store.getJob(jobId))?.state).toBe("queued");
    await c.admin().undrainHost({ hostId: "kvm-a" });
    expect(await waitJob(jobId)).toMatchObject({ state: "succeeded", hostId: "kvm-a", attempt: 1 });
    expect((await chain()).disks.every((d) => d.next === "incremental" && d.length === 1)).toBe(true);
    expect((await backup()).diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
  });

  it("agent killed mid-backup: the half-made checkpoint is rolled back, the job's next run commits its own", async () => {
    const jobId = await fullUntilPending(32 * MiB);
    await a.kill();
    await eventually(
      "interrupted",
      async () => (await c.running.ctx.store.getJob(jobId))?.state === "interrupted",
      30_000,
    );
    await a.start();
    const job = await waitJob(jobId);
    expect(job.state).toBe("succeeded");
    const mine = (await chain()).entries.filter((e) => e.jobId === jobId);
    expect(mine.filter((e) => e.state === "committed")).toHaveLength(2);
    expect(mine.filter((e) => e.state === "pending")).toEqual([]);
    // libvirt and the ledger agree: what the ledger holds live is what the host has.
    const onHost = (await execa("virsh", ["-c", lab.host1.uri, "checkpoint-list", "--name", vm.name])).stdout
      .split("\n")
      .filter(Boolean);
    const live = [
      ...new Set((await chain()).entries.filter((e) => e.state === "committed").map((e) => e.checkpoint)),
    ];
    expect(onHost.sort()).toEqual(live.sort());
    expect((await backup()).diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
  });

  it("a migration that keeps the source's definition: the stale checkpoint metadata there is removed, its bitmaps stay", async () => {
    await vm.migrate(host2, 180_000, { keepSource: true });
    await eventually(
      "chain kept on kvm-b",
      async () => (await chain()).disks.every((d) => d.lastHostId === "kvm-b" && d.next === "incremental"),
      60_000,
    );
    await eventually(
      "metadata gone on kvm-a",
      async () =>
        (await execa("virsh", ["-c", lab.host1.uri, "checkpoint-list", "--name", vm.name])).stdout.trim() ===
        "",
      30_000,
    );
    const live = (await chain()).entries.filter((e) => e.state === "committed").map((e) => e.checkpoint);
    const image = vm.disks.find((d) => d.target === "vdb")?.path ?? "";
    const info = (await execa("qemu-img", ["info", "-U", "--output=json", image])).stdout;
    for (const name of live) expect(info).toContain(name);
    expect((await backup()).diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
    await execa("virsh", ["-c", lab.host1.uri, "undefine", vm.name]);
  });
});
