import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { connectCoordinator } from "../../../cli/src/connectCoordinator.js";
import { initCoordinatorState } from "../../../coordinator/src/bootstrap/initCoordinatorState.js";
import { parseCoordinatorConfig } from "../../../coordinator/src/config/CoordinatorConfig.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { eventually, startTestCoordinator } from "../../support/coordinatorHarness.js";
import { SimAgent, simDomain } from "../../support/SimAgent.js";

const POLICY = `name: p
selector: {globs: ["vm-*"]}
schedule: {cron: "*/5 * * * *"}
mode: {kind: incremental, fullEvery: 7}
repository: main
`;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The real cairn-coordinator daemon as a child process (so it can be killed with SIGKILL). */
async function spawnCoordinator(configFile: string): Promise<{ child: ResultPromise }> {
  const child = execa("node", ["--import", "tsx", "coordinator/src/main.ts", "--config", configFile], {
    reject: false,
    buffer: false,
    stdout: "pipe",
    stderr: process.env.CAIRN_TEST_LOG ? "inherit" : "ignore",
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("coordinator did not start in 30 s")), 30_000);
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("listening on port")) {
        clearTimeout(t);
        resolve();
      }
    });
    void child.then((r) => reject(new Error(`coordinator exited early: ${r.exitCode}`)));
  });
  return { child }; // wrapped: a subprocess is itself a promise (of its exit)
}

describe("coordinator and agent crashes: jobs are reconciled, never duplicated, nothing lost", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("kill -9 of the coordinator mid-job: on restart the job is re-attached and recorded once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cairn-crash-"));
    dirs.push(dir);
    const port = await freePort();
    const config = {
      ...parseCoordinatorConfig("", "t"),
      stateDir: dir,
      listen: `127.0.0.1:${port}`,
      metricsListen: "",
    };
    writeFileSync(
      join(dir, "coordinator.yaml"),
      `stateDir: ${dir}\nlisten: "127.0.0.1:${port}"\nmetricsListen: ""\nheartbeatIntervalSeconds: 1\nlostAfterSeconds: 3\nschedulerTickMs: 100\nretryBaseMs: 100\nlogLevel: ${process.env.CAIRN_TEST_LOG ?? "warn"}\n`,
    );
    const init = await initCoordinatorState(config, { signal: AbortSignal.timeout(60_000) });
    await (await Repository.init(new LocalObjectStore(join(dir, "repo")), { chunkSize: 65536 })).close();
    let coordinator = (await spawnCoordinator(join(dir, "coordinator.yaml"))).child;
    const admin = () =>
      connectCoordinator({ coordinator: `127.0.0.1:${port}`, token: init.adminToken, caFile: init.caFile });
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1")], { durationMs: 3000 });
    try {
      await admin().registerRepository({ name: "main", location: join(dir, "repo") });
      await admin().applyPolicy({ yaml: POLICY });
      await agent.enroll(
        `127.0.0.1:${port}`,
        (await admin().createEnrollmentToken({ hostId: "kvm-1", ttlSeconds: 60 })).token,
        init.caFile,
      );
      await agent.start(`127.0.0.1:${port}`);
      const { jobId } = await admin().backupNow({ vm: "vm-1", policy: "", mode: 0 });
      await eventually("job running on the agent", async () => agent.jobs.runningJobIds().includes(jobId));
      coordinator.kill("SIGKILL");
      await coordinator;
      // The agent finishes the job while the coordinator is down.
      await eventually("agent finished", async () => !agent.jobs.runningJobIds().includes(jobId), 10_000);
      coordinator = (await spawnCoordinator(join(dir, "coordinator.yaml"))).child;
      const done = await eventually(
        "job reconciled",
        async () => {
          const j = (await admin().listJobs({ state: "", vm: "", limit: 10 })).jobs.find(
            (x) => x.jobId === jobId,
          );
          return j?.state === "succeeded" ? j : undefined;
        },
        20_000,
      );
      expect(agent.runs.get(jobId)).toBe(1);
      expect(
        (await admin().listSnapshots({ vm: "vm-1", repository: "" })).snapshots.map((s) => s.snapshotId),
      ).toEqual([done.snapshotId]);
      expect(
        (await admin().listJobs({ state: "", vm: "", limit: 10 })).jobs.filter((j) => j.kind === "backup"),
      ).toHaveLength(1);
    } finally {
      coordinator.kill("SIGKILL");
      await agent.dispose();
    }
  });

  it("kill -9 of an agent mid-job: interrupted, then retried once the agent is back", async () => {
    const c = await startTestCoordinator();
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1")], { durationMs: 2000 });
    try {
      await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
      await agent.start(c.address);
      await c.admin().applyPolicy({ yaml: POLICY });
      const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "", mode: 0 });
      await eventually("running on the agent", async () => agent.jobs.runningJobIds().includes(jobId));
      await agent.kill();
      const j = await eventually("interrupted", async () => {
        const x = await c.running.ctx.store.getJob(jobId);
        return x?.state === "interrupted" ? x : undefined;
      });
      expect(j.reason).toMatch(/lost the agent|host kvm-1 lost/);
      await new Promise((r) => setTimeout(r, 500));
      expect((await c.running.ctx.store.getJob(jobId))?.state).toBe("interrupted"); // nothing runs while it is away
      agent.behaviour = { durationMs: 100 };
      await agent.start(c.address);
      const done = await eventually("succeeded after the agent returned", async () => {
        const x = await c.running.ctx.store.getJob(jobId);
        return x?.state === "succeeded" ? x : undefined;
      });
      expect(agent.runs.get(jobId)).toBe(2); // the killed run and the retry, never two at once
      expect(
        (await c.running.ctx.store.listSnapshots({})).filter((s) => s.jobId === jobId).map((s) => s.id),
      ).toEqual([done.snapshotId]);
    } finally {
      await agent.dispose();
      await c.dispose();
    }
  });

  it("schedule fires missed while the coordinator was down run once on start", async () => {
    let now = Date.parse("2026-11-22T10:00:30Z");
    const c = await startTestCoordinator({}, { now: () => now, manualTicks: true });
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1"), simDomain(2, "vm-2")], { durationMs: 50 });
    try {
      await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
      await agent.start(c.address);
      await c.admin().applyPolicy({ yaml: POLICY });
      await c.running.tick();
      expect((await c.running.ctx.store.listJobs({})).filter((j) => j.kind === "backup")).toHaveLength(0); // no fire since the policy was created
      await c.restart({ now: () => now, manualTicks: true });
      now += 60 * 60_000; // down for an hour: 12 fires of */5 missed
      const r = (await c.running.tick()) as { created: number };
      expect(r.created).toBe(2); // once per VM, not 12 times
      const again = (await c.running.tick()) as { created: number };
      expect(again.created).toBe(0);
      const policy = await c.running.ctx.store.getPolicy("p");
      expect(policy?.lastFireMs).toBe(Date.parse("2026-11-22T11:00:00Z"));
    } finally {
      await agent.dispose();
      await c.dispose();
    }
  });
});
