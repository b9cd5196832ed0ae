import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Status } from "nice-grpc-common";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { JobRecord } from "../../../coordinator/src/store/records.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { simDomain as dom, SimAgent } from "../../support/SimAgent.js";

const policy = (name: string, extra: string) => `name: ${name}
selector:
  globs: ["vm-*"]
schedule:
  cron: "0 3 * * *"
mode:
  kind: incremental
  fullEvery: 3
repository: main
${extra}`;

// Real coordinator and scheduler with simulated agents writing real snapshots.
describe("jobs: policies, limits, retries, cancel, retention", () => {
  let c: TestCoordinator;
  const agent = new SimAgent("kvm-1", [dom(1, "vm-1"), dom(2, "vm-2"), dom(3, "vm-3"), dom(4, "other")]);
  const transitions: JobRecord[] = [];

  beforeAll(async () => {
    // A per-second cron fires the policy below at once: below the default minimum of 300 s.
    c = await startTestCoordinator({ policies: { minCronIntervalSeconds: 1 } });
    c.running.ctx.hub.watchAll((j) => transitions.push(j));
    await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
    await agent.start(c.address);
  });
  afterAll(async () => {
    await agent.dispose();
    await c.dispose();
  });
  afterEach(() => {
    agent.behaviour = { durationMs: 100 };
  });

  const finished = (id: string) =>
    eventually(`job ${id} to end`, async () => {
      const j = (await c.admin().listJobs({ state: "", vm: "", limit: 500 })).jobs.find(
        (x) => x.jobId === id,
      );
      return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
    });

  it("backup now runs on the VM's host, indexes the snapshot, and follows 'a full every 3'", async () => {
    await c.admin().applyPolicy({ yaml: policy("nightly", "retention:\n  keepLast: 2\n") });
    const modes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "", mode: 0 });
      const j = await finished(jobId);
      expect(j.state).toBe("succeeded");
      expect(j.snapshotId).toMatch(/^\d{8}T\d{6}Z-/);
      modes.push(j.mode);
    }
    expect(modes).toEqual(["full", "incremental", "incremental", "full"]);
    const snaps = (await c.admin().listSnapshots({ vm: "vm-1", repository: "" })).snapshots;
    expect(snaps).toHaveLength(4); // manual runs: retention runs after scheduled backups and on prune
    expect(snaps[0]).toMatchObject({ repository: "main", vmName: "vm-1", logicalBytes: BigInt(1 << 20) });
    expect(agent.runs.size).toBe(4);
  });

  it("one job per VM: a second backup now is refused while one is active", async () => {
    agent.behaviour = { durationMs: 1500 };
    const { jobId } = await c.admin().backupNow({ vm: "vm-2", policy: "nightly", mode: 0 });
    await expect(c.admin().backupNow({ vm: "vm-2", policy: "nightly", mode: 0 })).rejects.toMatchObject({
      code: "already-exists",
      message: expect.stringMatching(new RegExp(`vm-2 already has job ${jobId}`)),
    });
    await finished(jobId);
  });

  it("a transient failure is retried with backoff and then succeeds; a permanent one fails at once", async () => {
    agent.behaviour = {
      durationMs: 50,
      failAttempt: (_id, attempt) =>
        attempt === 1 ? { code: Status.INTERNAL, message: "qemu hiccup" } : undefined,
    };
    const { jobId } = await c.admin().backupNow({ vm: "vm-3", policy: "nightly", mode: 0 });
    const ok = await finished(jobId);
    expect(ok).toMatchObject({ state: "succeeded", attempt: 2 });
    const history = await c.running.ctx.store.jobHistory(jobId);
    expect(history.map((h) => h.to)).toEqual(["queued", "running", "queued", "running", "succeeded"]);
    expect(history[2]?.reason).toMatch(/attempt 1 failed: qemu hiccup; retrying/);

    agent.behaviour = {
      durationMs: 50,
      failAttempt: () => ({ code: Status.INVALID_ARGUMENT, message: "disk vdz does not exist" }),
    };
    const bad = await finished((await c.admin().backupNow({ vm: "vm-3", policy: "nightly", mode: 1 })).jobId);
    expect(bad).toMatchObject({ state: "failed", attempt: 1, reason: "disk vdz does not exist" });
  });

  it("cancel aborts the job on the agent and records who cancelled", async () => {
    agent.behaviour = { durationMs: 5000 };
    const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "nightly", mode: 0 });
    await eventually("running", async () => (await c.running.ctx.store.getJob(jobId))?.state === "running");
    await c.admin().cancelJob({ jobId });
    const j = await finished(jobId);
    expect(j.state).toBe("cancelled");
    // The agent unwinds the aborted job (its cleanup) after the coordinator has recorded the cancel.
    await eventually(
      "the agent dropped the job",
      async () => !agent.jobs.runningJobIds().includes(jobId),
      5000,
    );
    await expect(c.admin().cancelJob({ jobId })).rejects.toMatchObject({ code: "failed-precondition" });
    const audit = (await c.admin().listAudit({ limit: 5 })).entries;
    expect(
      audit.some((e) => e.action === "CancelJob" && e.target === jobId && e.principal === "admin:bootstrap"),
    ).toBe(true);
  });

  it("per-host concurrency: a policy firing over 3 VMs runs them one at a time on a perHost 1 host", async () => {
    transitions.length = 0;
    agent.behaviour = { durationMs: 300 };
    const { ctx } = c.running;
    await c.admin().applyPolicy({
      yaml: policy(
        "serial",
        "concurrency:\n  perHost: 1\n  perRepository: 4\n  global: 8\nretention:\n  keepLast: 1\n",
      ).replace('"0 3 * * *"', '"* * * * * *"'),
    });
    await eventually(
      "3 scheduled jobs done",
      async () => {
        const jobs = (await ctx.store.listJobs({ states: ["succeeded"] })).filter(
          (j) => j.policy === "serial" && j.kind === "backup",
        );
        return jobs.length >= 3;
      },
      20_000,
    );
    await c.admin().deletePolicy({ name: "serial" });
    // Never two backups running at once (replay the transitions the hub saw); the policy's prune
    // jobs are maintenance, limited by the repository's locks, not by perHost.
    let running = 0;
    let peak = 0;
    const state = new Map<string, string>();
    for (const j of transitions.filter((t) => t.policy === "serial" && t.kind === "backup")) {
      const before = state.get(j.id);
      if (before === j.state) continue;
      if (j.state === "running") running++;
      if (before === "running") running--;
      state.set(j.id, j.state);
      peak = Math.max(peak, running);
    }
    expect(peak).toBe(1);
    // The "other" VM does not match the glob.
    expect((await ctx.store.listJobs({})).some((j) => j.vmName === "other")).toBe(false);
    // Retention after scheduled backups: keepLast 1 per VM for this policy's snapshots.
    await eventually("retention applied", async () => {
      const snaps = await ctx.store.listSnapshots({ repository: "main" });
      return ["vm-1", "vm-2", "vm-3"].every(
        (n) => snaps.filter((s) => s.vmName === n && s.policy === "serial").length <= 1,
      );
    });
  });

  it("repository maintenance runs as jobs on the agent: stats, verify, prune by policy, gc", async () => {
    const admin = c.admin();
    const opts = { host: "", wait: true };
    const stats = await admin.repositoryStats({ name: "main", ...opts });
    expect(Number(stats.report?.snapshots)).toBeGreaterThanOrEqual(3);
    // The job ran on the agent, like a backup: a kind, a host, a state, an audit line.
    expect(stats.job).toMatchObject({
      kind: "stats",
      hostId: "kvm-1",
      state: "succeeded",
      repository: "main",
    });
    const v = await admin.verifyRepository({ name: "main", readData: true, readDataPercent: 0, ...opts });
    expect(v.report).toMatchObject({ ok: true, problems: [] });
    expect(Number(v.report?.chunksRead)).toBeGreaterThan(0);
    const dry = await admin.pruneRepository({ name: "main", dryRun: true, ...opts });
    const real = await admin.pruneRepository({ name: "main", dryRun: false, ...opts });
    expect(real.report?.removedSnapshotIds).toEqual(dry.report?.removedSnapshotIds);
    const after = await admin.listSnapshots({ vm: "", repository: "main" });
    for (const id of real.report?.removedSnapshotIds ?? [])
      expect(after.snapshots.some((s) => s.snapshotId === id)).toBe(false);
    const gc = await admin.gcRepository({ name: "main", dryRun: false, noRepack: false, ...opts });
    expect(gc.job).toMatchObject({ kind: "gc", state: "succeeded" });
    const queued = await admin.gcRepository({
      name: "main",
      dryRun: true,
      noRepack: false,
      host: "",
      wait: false,
    });
    expect(queued.report).toBeUndefined();
    expect((await finished(queued.job?.jobId ?? "")).state).toBe("succeeded");
    await expect(
      admin.gcRepository({ name: "nope", dryRun: true, noRepack: false, ...opts }),
    ).rejects.toMatchObject({
      code: "not-found",
    });
    await expect(
      admin.gcRepository({ name: "main", dryRun: true, noRepack: false, host: "kvm-9", wait: true }),
    ).rejects.toMatchObject({ code: "not-found" });
    const audit = (await admin.listAudit({ limit: 200 })).entries.map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(["VerifyRepository", "VerifyDone", "PruneDone", "GcDone"]));
  });

  it("verify through a job finds a flipped byte, and the job fails with the problem", async () => {
    // One byte in the middle of every pack: some of them hold chunks the snapshots reference.
    const packs = files(join(c.repoPath, "packs"));
    const flip = () => {
      for (const p of packs) {
        const bytes = readFileSync(p);
        const at = bytes.length >> 1;
        bytes[at] = (bytes[at] as number) ^ 0xff;
        writeFileSync(p, bytes);
      }
    };
    flip();
    const r = await c.admin().verifyRepository({
      name: "main",
      readData: true,
      readDataPercent: 0,
      host: "",
      wait: true,
    });
    expect(r.report?.ok).toBe(false);
    expect(r.report?.problems.join("\n")).toMatch(/corrupt-chunk/);
    expect(r.job).toMatchObject({ state: "failed" });
    expect(r.job?.reason).toMatch(/verification found \d+ problem/);
    flip();
  });

  it("registering a repository queues a scan on an agent; a wrong location fails it, naming the location", async () => {
    const r = await c.admin().registerRepository({ name: "elsewhere", location: "/nonexistent/cairn-repo" });
    const scan = await finished(r.scanJobId);
    expect(scan).toMatchObject({ kind: "scan", state: "failed" });
    expect(scan.reason).toMatch(/nonexistent/);
    await expect(
      c.admin().registerRepository({ name: "rel", location: "relative/path" }),
    ).rejects.toMatchObject({
      code: "invalid-argument",
    });
  });
});

function files(dir: string): string[] {
  const out = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
  if (!out.length) throw new Error(`no file under ${dir}`);
  return out;
}
