import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { simDomain as dom, SimAgent, unreachable } from "../../support/SimAgent.js";

const policy = (name: string, selector: string, extra = "") => `name: ${name}
selector:
  ${selector}
schedule:
  cron: "0 3 * * *"
mode:
  kind: incremental
repository: main
concurrency:
  perHost: 1
${extra}`;

// Transfer paths (docs/transfer-paths.md §2–§4, §6) against a real coordinator: kvm-1 reaches the
// repository (lan-free), kvm-2 and kvm-3 do not (network through a mover), two movers reach it.
describe("transfer paths: reach, assignment, network path, mover failure", () => {
  let c: TestCoordinator;
  const kvm1 = new SimAgent("kvm-1", [dom(1, "vm-1")]);
  const kvm2 = new SimAgent("kvm-2", [dom(2, "vm-2")], {
    durationMs: 100,
    reach: () => unreachable("ENOENT: /srv/san not mounted"),
  });
  const kvm3 = new SimAgent("kvm-3", [dom(3, "vm-3")], { durationMs: 100, reach: () => unreachable() });
  // mover-1 writes faster: it is the best mover while both are idle.
  const mover1 = new SimAgent("mover-1", [], { durationMs: 100, roles: ["mover"], writeMiBs: 300 });
  const mover2 = new SimAgent("mover-2", [], {
    durationMs: 100,
    roles: ["mover"],
    writeMiBs: 150,
    applianceOf: "kvm-2",
  });
  const all = [kvm1, kvm2, kvm3, mover1, mover2];

  beforeAll(async () => {
    c = await startTestCoordinator();
    for (const a of all) {
      await a.enroll(c.address, await c.enrollToken(a.hostId), c.caFile);
      await a.start(c.address);
    }
    await c.admin().applyPolicy({ yaml: policy("auto", 'globs: ["vm-*"]') });
    await c.admin().applyPolicy({ yaml: policy("lanfree", "names: [vm-2]", "transfer: lan-free\n") });
    await c.admin().applyPolicy({
      yaml: policy("only-m1", 'globs: ["vm-*"]', "movers:\n  names: [mover-1]\n"),
    });
    // Every host probed "main" (on registration).
    await eventually("every host reported reach", async () => {
      const r = await c.admin().showRepository({ name: "main" });
      return r.reach.length === all.length;
    });
  }, 60_000);
  afterAll(async () => {
    for (const a of all) await a.dispose();
    await c.dispose();
  });

  const finished = (id: string) =>
    eventually(
      `job ${id} to end`,
      async () => {
        const j = await c.running.ctx.store.getJob(id);
        return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
      },
      30_000,
    );
  const summary = async (id: string) =>
    (await c.admin().listJobs({ state: "", vm: "", limit: 500 })).jobs.find((j) => j.jobId === id);

  it("repo show: the repository's id, and per host whether and how fast it reaches it", async () => {
    const r = await c.admin().showRepository({ name: "main" });
    expect(r.repository).toMatchObject({ name: "main", location: c.repoPath, reachableHosts: 3 });
    expect(r.repository?.id).toMatch(/^[0-9a-f]{32}$/);
    const byHost = Object.fromEntries(r.reach.map((x) => [x.hostId, x]));
    expect(byHost["kvm-1"]).toMatchObject({
      reachable: true,
      location: c.repoPath,
      repositoryId: r.repository?.id,
    });
    expect(byHost["mover-1"]).toMatchObject({ reachable: true, writeMibS: 300 });
    expect(byHost["kvm-2"]).toMatchObject({ reachable: false, error: "ENOENT: /srv/san not mounted" });
    const listed = (await c.admin().listRepositories({})).repositories.find((x) => x.name === "main");
    expect(listed).toMatchObject({ id: r.repository?.id, reachableHosts: 3 });
    const hosts = Object.fromEntries((await c.admin().listHosts({})).hosts.map((h) => [h.hostId, h]));
    expect(hosts["mover-2"]).toMatchObject({ roles: ["mover"], applianceOf: "kvm-2" });
    expect(hosts["kvm-1"]?.roles).toEqual(["hypervisor"]);
  });

  it("lan-free: the VM host reaches the repository and writes it itself; the decision is recorded", async () => {
    const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "auto", mode: 0 });
    const j = await finished(jobId);
    expect(j.state).toBe("succeeded");
    expect(j.transfer).toMatchObject({ path: "lan-free", readerHostId: "kvm-1", location: c.repoPath });
    const s = await summary(jobId);
    expect(s?.transfer?.reason).toBe(`lan-free: kvm-1 reaches repository main (${c.repoPath}, 100 MiB/s)`);
    const req = kvm1.backupRequests.find((r) => r.jobId === jobId);
    expect(req?.repository).toBe(c.repoPath);
    expect(req?.transfer).toBeUndefined();
    expect(mover1.reads.has(jobId) || mover2.reads.has(jobId)).toBe(false);
  });

  it("network: a mover reads the VM host's export, the VM host finishes it, the snapshot is indexed", async () => {
    const { jobId } = await c.admin().backupNow({ vm: "vm-2", policy: "auto", mode: 0 });
    const j = await finished(jobId);
    expect(j).toMatchObject({ state: "succeeded", transfer: { path: "network", readerHostId: "mover-1" } });
    expect(j.transfer?.reason).toMatch(/^network via mover-1: kvm-2 cannot reach repository main \(ENOENT/);
    expect((await summary(jobId))?.transfer).toMatchObject({ path: "network", readerHostId: "mover-1" });
    const req = kvm2.backupRequests.find((r) => r.jobId === jobId);
    expect(req?.repository).toBe("");
    expect(req?.transfer?.readerHostId).toBe("mover-1");
    expect(req?.transfer?.readerCertificatePem).toContain("BEGIN CERTIFICATE");
    expect(req?.transfer?.history).toEqual([]);
    expect(mover1.reads.get(jobId)).toBe(1);
    const fin = kvm2.finishes.find((f) => f.jobId === jobId);
    expect(fin).toMatchObject({ found: true, reason: "" });
    expect(JSON.parse(fin?.manifestJson ?? "{}").id).toBe(j.snapshotId);
    const snap = await c.running.ctx.store.getSnapshot(j.snapshotId as string);
    expect(snap).toMatchObject({ repository: "main", vmName: "vm-2", jobId });
    // The VM host's checkpoint reached the ledger (its result, merged with the reader's).
    const ledger = await c.running.ctx.store.listLedger(dom(2, "vm-2").uuid);
    expect(ledger.map((e) => e.state)).toContain("committed");

    // The next backup's VM host plans from the catalog's history of that VM.
    const next = await c.admin().backupNow({ vm: "vm-2", policy: "auto", mode: 0 });
    expect((await finished(next.jobId)).state).toBe("succeeded");
    const h = kvm2.backupRequests.find((r) => r.jobId === next.jobId)?.transfer?.history;
    expect(h?.map((e) => e.snapshotId)).toEqual([j.snapshotId]);
    expect(h?.[0]).toMatchObject({ jobId, disks: [{ target: "vda", kind: "full" }] });
  });

  it("no path: fails before the VM host is called, naming the repository and the hosts that reach it", async () => {
    const before = kvm2.backupRequests.length;
    const { jobId } = await c.admin().backupNow({ vm: "vm-2", policy: "lanfree", mode: 0 });
    const j = await finished(jobId);
    expect(j.state).toBe("failed");
    expect(j.reason).toMatch(/repository main/);
    expect(j.reason).toMatch(/reached by kvm-1, mover-1, mover-2/);
    expect(kvm2.backupRequests.length).toBe(before);
    expect((await c.running.ctx.store.jobHistory(jobId)).map((x) => x.to)).toEqual(["queued", "failed"]);
  });

  it("busy mover: a job whose only allowed mover is at its limit stays queued, saying why, then runs", async () => {
    mover1.behaviour.readMs = 2500;
    try {
      const a = await c.admin().backupNow({ vm: "vm-2", policy: "only-m1", mode: 0 });
      await eventually("mover-1 reads", async () => mover1.reads.has(a.jobId));
      const b = await c.admin().backupNow({ vm: "vm-3", policy: "only-m1", mode: 0 });
      const waiting = await eventually("job b waits for mover-1", async () => {
        const j = await c.running.ctx.store.getJob(b.jobId);
        return j?.state === "queued" && /concurrency limit \(mover-1\)/.test(j.reason) ? j : undefined;
      });
      expect(waiting.reason).toMatch(/every mover that reaches repository main/);
      expect(kvm3.backupRequests.some((r) => r.jobId === b.jobId)).toBe(false);
      expect((await finished(a.jobId)).state).toBe("succeeded");
      const jb = await finished(b.jobId);
      expect(jb).toMatchObject({ state: "succeeded", transfer: { readerHostId: "mover-1" } });
    } finally {
      mover1.behaviour.readMs = undefined;
    }
  });

  it("a coordinator restart mid-read re-attaches both halves by job id: read once, recorded once", async () => {
    mover1.behaviour.readMs = 3000;
    try {
      const { jobId } = await c.admin().backupNow({ vm: "vm-2", policy: "only-m1", mode: 0 });
      await eventually("mover-1 reads", async () => mover1.reads.has(jobId));
      await c.restart();
      const j = await finished(jobId);
      expect(j).toMatchObject({ state: "succeeded", attempt: 1, transfer: { readerHostId: "mover-1" } });
      expect(mover1.reads.get(jobId)).toBe(1);
      expect(kvm2.runs.get(jobId)).toBe(1);
      expect(kvm2.finishes.filter((f) => f.jobId === jobId)).toHaveLength(1);
      const to = (await c.running.ctx.store.jobHistory(jobId)).map((h) => h.to);
      expect(to).toEqual(["queued", "running", "interrupted", "running", "succeeded"]);
    } finally {
      mover1.behaviour.readMs = undefined;
    }
  });

  it("the mover dies mid-read: the VM host is told to end the export, the job is retried on another mover", async () => {
    mover1.behaviour.readMs = 4000;
    const { jobId } = await c.admin().backupNow({ vm: "vm-2", policy: "auto", mode: 0 });
    await eventually("mover-1 reads", async () => mover1.reads.has(jobId));
    await mover1.kill();
    const fin = await eventually("FinishExport without a manifest", async () =>
      kvm2.finishes.find((f) => f.jobId === jobId && !f.manifestJson),
    );
    expect(fin).toMatchObject({
      found: true,
      reason: expect.stringMatching(/^mover mover-1 failed reading the export/),
    });
    const j = await finished(jobId);
    expect(j).toMatchObject({
      state: "succeeded",
      attempt: 2,
      transfer: { path: "network", readerHostId: "mover-2" },
    });
    const history = await c.running.ctx.store.jobHistory(jobId);
    expect(history.find((h) => h.from === "running" && h.to === "queued")?.reason).toMatch(
      /attempt 1 failed: mover mover-1 failed reading the export/,
    );
    expect(mover2.reads.get(jobId)).toBe(1);
    // The VM host ran the export twice: once torn down unsealed, once finished with a manifest.
    expect(kvm2.runs.get(jobId)).toBe(2);
    expect(kvm2.finishes.filter((f) => f.jobId === jobId).map((f) => Boolean(f.manifestJson))).toEqual([
      false,
      true,
    ]);
  });
});
