import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobRecord } from "../../../coordinator/src/store/records.js";
import { BackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { cairnCli, coordinatorArgs } from "../../support/cairnCli.js";
import {
  eventually,
  startTestCoordinator,
  type TestCoordinator,
  waitForJobEnd,
} from "../../support/coordinatorHarness.js";
import { simDomain as dom, SimAgent } from "../../support/SimAgent.js";

// Real coordinator, enrollment, mTLS and CoordinatorLink; agents simulate libvirt's checkpoint
// metadata and QEMU's bitmaps (SimAgent.chains) the way the lab showed them to behave.
describe("checkpoint ledger: chains through backups, migration, crash, deferral and drain", () => {
  let c: TestCoordinator;
  const vm = dom(1, "app-1");
  const a = new SimAgent("kvm-a", [vm], { durationMs: 100 });
  const b = new SimAgent("kvm-b", [], { durationMs: 100 });

  const backup = async (mode = BackupMode.BACKUP_MODE_INCREMENTAL): Promise<JobRecord> => {
    const { jobId } = await c.admin().backupNow({ vm: vm.name, policy: "lab", mode });
    return waitJob(jobId);
  };
  const waitJob = (jobId: string) => waitForJobEnd(c, jobId, 30_000);
  const chain = () => c.admin().showVmChain({ vm: vm.name, events: 50 });
  const vda = async () => (await chain()).disks.find((d) => d.target === "vda");

  beforeAll(async () => {
    c = await startTestCoordinator();
    for (const s of [a, b]) {
      await s.enroll(c.address, await c.enrollToken(s.hostId), c.caFile);
      await s.start(c.address, { pollMs: 50 });
    }
    await c.admin().applyPolicy({
      yaml: `name: lab\nselector: {names: [${vm.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 100}\nrepository: main\n`,
    });
  });
  afterAll(async () => {
    await a.dispose();
    await b.dispose();
    await c.dispose();
  });

  it("a backup's checkpoint is pending while the job runs, then committed with its XML and snapshot", async () => {
    a.behaviour.durationMs = 1500;
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_FULL });
    await eventually("pending entry", async () => (await chain()).entries.some((e) => e.state === "pending"));
    a.behaviour.durationMs = 100;
    const job = await waitJob(jobId);
    expect(job.state).toBe("succeeded");
    const r = await chain();
    expect(r.entries).toHaveLength(1);
    expect(r.entries[0]).toMatchObject({
      state: "committed",
      hostId: "kvm-a",
      kind: "full",
      snapshotId: job.snapshotId,
    });
    expect(r.changes.map((x) => `${x.from}>${x.to}`)).toEqual(["pending>committed", ">pending"]);
    expect(await vda()).toMatchObject({ next: "incremental", length: 1 });
    expect((await vda())?.summary).toMatch(
      /^vda: incremental chain of 1, last checkpoint cairn-\S+ on kvm-a$/,
    );
  });

  it("incrementals extend the chain; pruned checkpoints are retired, the root stays", async () => {
    expect((await backup()).diskKinds).toEqual({ vda: "incremental" });
    expect((await backup()).diskKinds).toEqual({ vda: "incremental" });
    const r = await chain();
    expect(r.entries.map((e) => e.state)).toEqual(["committed", "retired", "committed"]);
    expect(r.entries[1]?.reason).toMatch(/deleted after job .* \(its bitmap merged into its parent\)/);
    expect(await vda()).toMatchObject({ next: "incremental", length: 3 });
  });

  it("live migration A→B: the chain is redefined on B, kept, and the next backup runs there incrementally", async () => {
    const t0 = Date.now();
    a.migrateTo(b, vm.uuid);
    await eventually("chain carried to kvm-b", async () => (await vda())?.lastHostId === "kvm-b");
    console.log(`[ledger] migration reconciled in ${Date.now() - t0} ms`);
    // Redefined oldest first, each with its current parent (the pruned one in between is gone).
    const onB = b.chains.get(vm.uuid)?.checkpoints ?? [];
    const live = (await chain()).entries.filter((e) => e.state === "committed");
    expect(onB.map((x) => x.name)).toEqual(live.map((e) => e.checkpoint));
    expect(onB[1]?.xml).toContain(`<parent>\n    <name>${live[0]?.checkpoint}</name>`);
    expect((await vda())?.summary).toMatch(
      /incremental chain of 3, last checkpoint \S+ on kvm-b \(carried from kvm-a to kvm-b/,
    );
    expect((await c.admin().listVms({ hostId: "kvm-b" })).vms.map((v) => v.name)).toEqual([vm.name]);
    const job = await backup();
    expect(job).toMatchObject({ state: "succeeded", hostId: "kvm-b", diskKinds: { vda: "incremental" } });
    expect(await vda()).toMatchObject({ length: 4, lastHostId: "kvm-b" });
    expect((await chain()).events.some((e) => e.hostId === "kvm-b")).toBe(true);
  });

  it("a migration that loses the bitmaps demotes the disk with the reason, and the next backup is full", async () => {
    b.behaviour.bitmapsLost = new Set([vm.uuid]);
    b.migrateTo(a, vm.uuid, { bitmaps: false });
    await eventually("vda demoted", async () => (await vda())?.next === "full");
    expect((await vda())?.summary).toMatch(
      /^vda: will be read in full: its chain broke at \S+: bitmap \S+ of vda is missing in the running QEMU: storage copied without bitmaps/,
    );
    const job = await backup();
    expect(job).toMatchObject({ state: "succeeded", hostId: "kvm-a" });
    expect(job.diskKinds["vda"]).toMatch(/^full: /);
    expect(await vda()).toMatchObject({ next: "incremental", length: 1, lastHostId: "kvm-a" });
    b.behaviour.bitmapsLost = undefined;
  });

  it("a crash marks the chain suspect; the next backup confirms the bitmap survived", async () => {
    const d = a.hypervisor.domains.find((x) => x.uuid === vm.uuid);
    if (!d) throw new Error("no domain");
    d.state = "crashed";
    await eventually("suspect", async () => (await vda())?.next === "check");
    expect((await vda())?.summary).toMatch(/suspect since .*QEMU stopped uncleanly on kvm-a/);
    d.state = "running";
    const job = await backup();
    expect(job.diskKinds).toEqual({ vda: "incremental" });
    expect(await vda()).toMatchObject({ next: "incremental" });
    expect((await chain()).changes[0]?.reason).toMatch(/confirmed by job .*: the bitmap survived/);
  });

  it("a crash that left the bitmap inconsistent: the next backup reads the disk in full and the ledger says why", async () => {
    const d = a.hypervisor.domains.find((x) => x.uuid === vm.uuid);
    if (!d) throw new Error("no domain");
    d.state = "crashed";
    await eventually("suspect", async () => (await vda())?.next === "check");
    for (const bm of a.chains.get(vm.uuid)?.bitmaps ?? []) bm.inconsistent = true;
    d.state = "running";
    const job = await backup();
    expect(job.diskKinds["vda"]).toMatch(/^full: dirty bitmap \S+ of vda is inconsistent/);
    const broken = (await chain()).entries.filter((e) => e.state === "broken");
    expect(broken.at(-1)?.reason).toMatch(/read vda in full: dirty bitmap .* inconsistent/);
    expect(await vda()).toMatchObject({ next: "incremental", length: 1 });
  });

  it("a job queued while the VM migrates is deferred (no attempt used) and runs on the destination", async () => {
    a.behaviour.migrating = new Set([vm.uuid]);
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_INCREMENTAL });
    await eventually("deferred", async () => {
      const j = await c.running.ctx.store.getJob(jobId);
      return j?.state === "queued" && j.reason.startsWith("deferred by kvm-a: migrating") ? j : undefined;
    });
    a.migrateTo(b, vm.uuid);
    a.behaviour.migrating = undefined;
    const job = await waitJob(jobId);
    expect(job).toMatchObject({
      state: "succeeded",
      hostId: "kvm-b",
      attempt: 1,
      diskKinds: { vda: "incremental" },
    });
    expect((await c.running.ctx.store.jobHistory(jobId)).map((h) => h.reason).join("\n")).toMatch(
      /dispatched to kvm-b \(app-1 runs on kvm-b now, not kvm-a\)/,
    );
  });

  it("hosts drain --abort-running: the running backup is aborted and queued again; nothing new starts there until undrain", async () => {
    b.behaviour.durationMs = 20_000;
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_INCREMENTAL });
    await eventually("running", async () => (await c.running.ctx.store.getJob(jobId))?.state === "running");
    await eventually("pending", async () => (await chain()).entries.some((e) => e.state === "pending"));
    const r = await c.admin().drainHost({ hostId: "kvm-b", reason: "kernel update", abortRunning: true });
    expect(r.abortedJobIds).toEqual([jobId]);
    b.behaviour.durationMs = 100;
    await eventually(
      "queued again",
      async () => (await c.running.ctx.store.getJob(jobId))?.state === "queued",
    );
    expect((await chain()).entries.some((e) => e.state === "pending")).toBe(false);
    expect((await chain()).changes[0]?.reason).toMatch(/rolled back: job .* ended without sealing/);
    const hosts = (await c.admin().listHosts({})).hosts;
    expect(hosts.find((h) => h.hostId === "kvm-b")).toMatchObject({
      drained: true,
      drainReason: "kernel update",
    });
    await new Promise((res) => setTimeout(res, 1500));
    expect((await c.running.ctx.store.getJob(jobId))?.state).toBe("queued"); // not dispatched to a drained host
    await c.admin().undrainHost({ hostId: "kvm-b" });
    expect(await waitJob(jobId)).toMatchObject({ state: "succeeded", hostId: "kvm-b", attempt: 1 });
    const audit = (await c.admin().listAudit({ limit: 5 })).entries.map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(["DrainHost", "UndrainHost"]));
  });

  it("the CLI: vms chain in plain words and --json; hosts drain --wait returns once the running backup ended", async () => {
    const cli = (...args: string[]) => cairnCli([...args, ...coordinatorArgs(c)]);
    const human = await cli("vms", "chain", vm.name);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(/^ {2}vda: incremental chain of \d+, last checkpoint cairn-\S+ on kvm-b/m);
    expect(human.stdout).toMatch(/CHECKPOINT\s+DISK\s+STATE/);
    const json = JSON.parse((await cli("vms", "chain", vm.name, "--json")).stdout) as {
      disks: { target: string; next: string }[];
    };
    expect(json.disks).toEqual([expect.objectContaining({ target: "vda", next: "incremental" })]);
    const show = await cli("vms", "show", vm.name);
    expect(show.stdout).toMatch(new RegExp(`^${vm.name} \\(${vm.uuid}\\)\n  host: kvm-b, running`));
    const unknown = await cli("vms", "chain", "no-such-vm");
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.stderr).toMatch(/no VM no-such-vm in the inventory/);

    b.behaviour.durationMs = 3000;
    const { jobId } = await c
      .admin()
      .backupNow({ vm: vm.name, policy: "lab", mode: BackupMode.BACKUP_MODE_INCREMENTAL });
    await eventually("running", async () => (await c.running.ctx.store.getJob(jobId))?.state === "running");
    const drained = await cli("hosts", "drain", "kvm-b", "--wait", "--reason", "patching");
    expect(drained.exitCode).toBe(0);
    expect(drained.stdout).toMatch(/kvm-b drained: no new jobs are dispatched to it/);
    expect(drained.stdout).toMatch(/no backup runs there now/);
    expect((await c.running.ctx.store.getJob(jobId))?.state).toBe("succeeded"); // --wait let it finish
    expect((await cli("hosts", "list")).stdout).toMatch(/kvm-b .* yes: patching/);
    expect((await cli("hosts", "undrain", "kvm-b")).stdout).toMatch(/kvm-b takes jobs again/);
    b.behaviour.durationMs = 100;
  });
});
