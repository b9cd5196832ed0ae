import { Status } from "nice-grpc-common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobSummary } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { cairnCli, coordinatorArgs } from "../../support/cairnCli.js";
import {
  eventually,
  startTestCoordinator,
  type TestCoordinator,
  waitForJobEnd,
} from "../../support/coordinatorHarness.js";
import { simDomain as dom, SimAgent, unreachable } from "../../support/SimAgent.js";

const POLICY = `name: nightly
selector:
  globs: ["vm-*"]
schedule:
  cron: "0 3 * * *"
mode:
  kind: incremental
repository: main
`;

// Restores through the coordinator (docs/restore.md §1), run by simulated agents: kvm-1 holds
// vm-1 (running) and vm-2 (shut off) and reaches the repository; kvm-2 does not reach it.
describe("restore jobs: dispatch, progress, outcome, cancel, refusals, in place", () => {
  let c: TestCoordinator;
  const kvm1 = new SimAgent("kvm-1", [dom(1, "vm-1"), { ...dom(2, "vm-2"), state: "shutoff" }], {
    durationMs: 50,
    restoreMs: 300,
  });
  const kvm2 = new SimAgent("kvm-2", [], { durationMs: 50, reach: () => unreachable("ENOENT: /srv/san") });
  const snaps: Record<string, string> = {};

  const backup = async (vm: string) => {
    const { jobId } = await c.admin().backupNow({ vm, policy: "nightly", mode: 0 });
    const j = await waitForJobEnd(c, jobId, 30_000);
    expect(j.state).toBe("succeeded");
    return j;
  };
  const summary = async (jobId: string): Promise<JobSummary> => {
    for await (const r of c.admin().watchJob({ jobId })) if (r.job) return r.job;
    throw new Error("no summary");
  };

  beforeAll(async () => {
    c = await startTestCoordinator();
    for (const a of [kvm1, kvm2]) {
      await a.enroll(c.address, await c.enrollToken(a.hostId), c.caFile);
      await a.start(c.address);
    }
    await c.admin().applyPolicy({ yaml: POLICY });
    await eventually("both hosts reported reach", async () => {
      return (await c.admin().showRepository({ name: "main" })).reach.length === 2;
    });
    for (const vm of ["vm-1", "vm-2"]) snaps[vm] = (await backup(vm)).snapshotId as string;
  }, 60_000);
  afterAll(async () => {
    for (const a of [kvm1, kvm2]) await a.dispose();
    await c.dispose();
  });

  it("a disk restore is a job on the VM's host, with progress in WatchJob and the result in JobSummary.restore", async () => {
    const { jobId } = await c.admin().restoreDisk({
      snapshotId: snaps["vm-1"] as string,
      diskTarget: "vda",
      hostId: "",
      destination: "/var/tmp/vm-1-vda.img",
      format: "",
      overwrite: false,
    });
    const seen: JobSummary[] = [];
    for await (const r of c.admin().watchJob({ jobId })) if (r.job) seen.push(r.job);
    const last = seen.at(-1) as JobSummary;
    expect(seen.some((j) => j.state.startsWith("running") && Number(j.progress?.bytesDone) > 0)).toBe(true);
    expect(last).toMatchObject({
      kind: "restore-disk",
      state: "succeeded",
      hostId: "kvm-1",
      vmName: "vm-1",
      repository: "main",
      snapshotId: snaps["vm-1"],
    });
    expect(last.restore?.outcome).toEqual({
      $case: "disk",
      value: {
        destination: "/var/tmp/vm-1-vda.img",
        format: "raw",
        targetKind: "file",
        bytesWritten: 1n << 20n,
        bytesZeroed: 0n,
      },
    });
    // The agent was given the repository as it reaches it, and the job id.
    const req = kvm1.restoreRequests.find((r) => r.request.jobId === jobId);
    expect(req).toMatchObject({
      kind: "disk",
      request: { repository: c.repoPath, snapshotId: snaps["vm-1"], diskTarget: "vda", format: "raw" },
    });
    const history = await c.running.ctx.store.jobHistory(jobId);
    expect(history.find((h) => h.to === "running")?.reason).toMatch(
      /^dispatched to kvm-1$|^dispatched to kvm-1 \(/,
    );
    expect((await c.running.ctx.store.getJob(jobId))?.reason).toMatch(
      /^restored to \/var\/tmp\/vm-1-vda.img/,
    );
    // Audited as the caller's action, and its end as the coordinator's.
    const audit = (await c.admin().listAudit({ limit: 50 })).entries;
    expect(audit.find((e) => e.action === "RestoreDisk")).toMatchObject({
      principal: "admin:bootstrap",
      target: "vm-1",
    });
    expect(audit.find((e) => e.action === "RestoreDone")?.detail).toContain(jobId);
    // `cairn jobs show` prints what was written; `jobs list` the kind.
    const shown = await cairnCli(["jobs", "show", jobId, ...coordinatorArgs(c)], { timeoutMs: 60_000 });
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout).toContain("kind:        restore-disk");
    expect(shown.stdout).toContain(`snapshot:    ${snaps["vm-1"]}`);
    expect(shown.stdout).toContain("written to:  /var/tmp/vm-1-vda.img (raw, file)");
    const listed = await cairnCli(["jobs", "list", ...coordinatorArgs(c)], { timeoutMs: 60_000 });
    expect(listed.stdout).toMatch(new RegExp(`${jobId}\\s+vm-1\\s+kvm-1\\s+restore-disk\\s+succeeded`));
  }, 60_000);

  it("`cairn restore vm` creates the job, follows it and prints the new domain (--json: the final job)", async () => {
    const r = await cairnCli(
      [
        "restore",
        "vm",
        snaps["vm-1"] as string,
        "--name",
        "vm-1-copy",
        "--storage",
        "/srv/vms",
        "--json",
        ...coordinatorArgs(c),
      ],
      { timeoutMs: 60_000 },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout.trim().split("\n").at(-1) as string);
    expect(job).toMatchObject({ kind: "restore-vm", state: "succeeded", hostId: "kvm-1" });
    expect(job.restore.outcome.value).toMatchObject({
      domainName: "vm-1-copy",
      inPlace: false,
      disks: [{ target: "vda", path: "/srv/vms/vm-1-copy-vda.qcow2", format: "qcow2" }],
    });
    expect(kvm1.hypervisor.domains.some((d) => d.name === "vm-1-copy")).toBe(true);
    // Text output: the rows of what was written.
    const again = await cairnCli(
      [
        "restore",
        "vm",
        snaps["vm-1"] as string,
        "--name",
        "vm-1-copy2",
        "--pool",
        "fast",
        ...coordinatorArgs(c),
      ],
      { timeoutMs: 60_000 },
    );
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toContain("domain: vm-1-copy2");
    expect(again.stdout).toContain("disk vda: pool fast volume vm-1-copy2-vda (qcow2");
  }, 60_000);

  it("a host that does not reach the repository fails the job at once, naming the repository and who reaches it", async () => {
    const { jobId } = await c.admin().restoreDisk({
      snapshotId: snaps["vm-1"] as string,
      diskTarget: "vda",
      hostId: "kvm-2",
      destination: "/tmp/x.img",
      format: "raw",
      overwrite: false,
    });
    const j = await c.running.ctx.store.getJob(jobId);
    expect(j).toMatchObject({ state: "failed", hostId: "kvm-2", kind: "restore-disk" });
    expect(j?.reason).toBe(
      "cannot restore: host kvm-2 does not reach repository main (ENOENT: /srv/san); repository main is reached by kvm-1",
    );
    expect(kvm2.restoreRequests).toEqual([]);
    // The CLI says so and exits non-zero.
    const r = await cairnCli(
      [
        "restore",
        "disk",
        snaps["vm-1"] as string,
        "vda",
        "--to",
        "/tmp/y.img",
        "--host",
        "kvm-2",
        ...coordinatorArgs(c),
      ],
      { timeoutMs: 60_000 },
    );
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("repository main is reached by kvm-1");
  }, 60_000);

  it("bad input is refused at the edge, naming the field; nothing is queued", async () => {
    const before = (await c.running.ctx.store.listJobs({})).length;
    const base = {
      snapshotId: snaps["vm-1"] as string,
      diskTarget: "vda",
      hostId: "",
      destination: "/tmp/z.img",
      format: "raw",
      overwrite: false,
    };
    await expect(c.admin().restoreDisk({ ...base, diskTarget: "vdz" })).rejects.toMatchObject({
      code: "not-found",
      message: expect.stringMatching(/^disk_target: snapshot .* has no disk vdz \(it has vda\)/),
    });
    await expect(c.admin().restoreDisk({ ...base, destination: "rel/z.img" })).rejects.toMatchObject({
      code: "invalid-argument",
      message: expect.stringMatching(/^destination: "rel\/z.img" is not an absolute path/),
    });
    await expect(c.admin().restoreDisk({ ...base, hostId: "kvm-9" })).rejects.toMatchObject({
      code: "not-found",
      message: expect.stringMatching(/^host_id: host kvm-9 is not enrolled/),
    });
    await expect(
      c.admin().restoreVm({
        snapshotId: snaps["vm-2"] as string,
        hostId: "",
        newName: "x",
        destinationDir: "",
        pool: "",
        format: "",
        start: false,
        inPlace: true,
      }),
    ).rejects.toMatchObject({
      code: "invalid-argument",
      message: expect.stringMatching(/^in_place: excludes new_name/),
    });
    expect((await c.running.ctx.store.listJobs({})).length).toBe(before);
  });

  it("role viewer may not restore; operator may", async () => {
    const viewer = (await c.admin().createToken({ name: "ro", role: "viewer" })).token;
    const operator = (await c.admin().createToken({ name: "ops", role: "operator" })).token;
    const req = {
      snapshotId: snaps["vm-1"] as string,
      hostId: "",
      newName: "vm-1-ops",
      destinationDir: "",
      pool: "",
      format: "",
      start: false,
      inPlace: false,
    };
    await expect(c.admin(viewer).restoreVm(req)).rejects.toMatchObject({ code: "permission-denied" });
    const { jobId } = await c.admin(operator).restoreVm(req);
    expect((await waitForJobEnd(c, jobId, 30_000)).state).toBe("succeeded");
    const audit = (await c.admin().listAudit({ limit: 50 })).entries;
    expect(audit.find((e) => e.action === "RestoreVm" && e.detail.includes(jobId))?.principal).toBe(
      "operator:ops",
    );
  }, 60_000);

  it("cancel aborts the restore on its agent", async () => {
    kvm1.behaviour.restoreMs = 20_000;
    try {
      const { jobId } = await c.admin().restoreDisk({
        snapshotId: snaps["vm-1"] as string,
        diskTarget: "vda",
        hostId: "",
        destination: "/var/tmp/cancelled.img",
        format: "qcow2",
        overwrite: false,
      });
      await eventually("restore running on kvm-1", async () => kvm1.jobs.runningJobIds().includes(jobId));
      await c.admin().cancelJob({ jobId });
      const j = await waitForJobEnd(c, jobId, 15_000);
      expect(j.state).toBe("cancelled");
      expect(kvm1.jobs.runningJobIds()).not.toContain(jobId);
      expect(kvm1.restored.has("/var/tmp/cancelled.img")).toBe(false);
    } finally {
      kvm1.behaviour.restoreMs = 300;
    }
  }, 30_000);

  it("a failed attempt is retried like any job's; an agent's refusal fails at once", async () => {
    kvm1.behaviour.failAttempt = (_id, attempt) =>
      attempt === 1 ? { code: Status.INTERNAL, message: "EIO writing the target" } : undefined;
    try {
      const { jobId } = await c.admin().restoreDisk({
        snapshotId: snaps["vm-1"] as string,
        diskTarget: "vda",
        hostId: "",
        destination: "/var/tmp/retried.img",
        format: "raw",
        overwrite: false,
      });
      const j = await waitForJobEnd(c, jobId, 30_000);
      expect(j).toMatchObject({ state: "succeeded", attempt: 2 });
      expect(kvm1.restoreRuns.get(jobId)).toBe(2);
    } finally {
      kvm1.behaviour.failAttempt = undefined;
    }
    // The name exists: refused by the agent before anything is written, not retried.
    const { jobId } = await c.admin().restoreVm({
      snapshotId: snaps["vm-1"] as string,
      hostId: "",
      newName: "vm-1-copy",
      destinationDir: "",
      pool: "",
      format: "",
      start: false,
      inPlace: false,
    });
    const j = await waitForJobEnd(c, jobId, 30_000);
    expect(j).toMatchObject({
      state: "failed",
      attempt: 1,
      reason: "a domain named vm-1-copy exists on kvm-1",
    });
  }, 60_000);

  it("a restore survives a coordinator restart: re-attached by job id, run once", async () => {
    kvm1.behaviour.restoreMs = 2_000;
    try {
      const { jobId } = await c.admin().restoreDisk({
        snapshotId: snaps["vm-1"] as string,
        diskTarget: "vda",
        hostId: "",
        destination: "/var/tmp/restart.img",
        format: "raw",
        overwrite: false,
      });
      await eventually("restore running on kvm-1", async () => kvm1.jobs.runningJobIds().includes(jobId));
      await c.restart();
      const j = await waitForJobEnd(c, jobId, 30_000);
      expect(j.state).toBe("succeeded");
      expect(kvm1.restoreRuns.get(jobId)).toBe(1);
      const history = await c.running.ctx.store.jobHistory(jobId);
      expect(history.map((h) => h.to)).toEqual(["queued", "running", "interrupted", "running", "succeeded"]);
      expect(outcomeDestination(await summary(jobId))).toBe("/var/tmp/restart.img");
    } finally {
      kvm1.behaviour.restoreMs = 300;
    }
  }, 60_000);

  it("in place over a shut-off VM: afterwards its chain is broken with the reason, and the next backup is full", async () => {
    const snap = snaps["vm-2"] as string;
    const before = await c.admin().showVmChain({ vm: "vm-2", events: 0 });
    expect(before.disks.map((d) => d.next)).toEqual(["incremental"]);
    const r = await cairnCli(["restore", "vm", snap, "--in-place", ...coordinatorArgs(c)], {
      timeoutMs: 60_000,
    });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("--force");
    const ok = await cairnCli(["restore", "vm", snap, "--in-place", "--force", ...coordinatorArgs(c)], {
      timeoutMs: 60_000,
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("domain: vm-2 (00000000-0000-4000-8000-000000000002), in place");
    const chain = await c.admin().showVmChain({ vm: "vm-2", events: 0 });
    expect(chain.disks.map((d) => d.next)).toEqual(["full"]);
    expect(chain.disks[0]?.reason).toMatch(new RegExp(`^restored in place from ${snap} \\(job job-`));
    const next = await backup("vm-2");
    expect(next.diskKinds["vda"]).toMatch(/^full/);
  }, 60_000);
});

function outcomeDestination(j: JobSummary): string | undefined {
  const o = j.restore?.outcome;
  return o?.$case === "disk" ? o.value.destination : undefined;
}
