import { describe, expect, it } from "vitest";
import type { JobRecord } from "../../../coordinator/src/store/records.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { SimAgent, simDomain } from "../../support/SimAgent.js";

const POLICY = `name: p
selector: {globs: ["vm-*"]}
schedule: {cron: "0 3 * * *"}
mode: {kind: incremental, fullEvery: 7}
repository: main
`;

const jobIn = (c: TestCoordinator, jobId: string, states: JobRecord["state"][]) =>
  eventually(`job ${jobId} ${states.join("|")}`, async () => {
    const j = await c.running.ctx.store.getJob(jobId);
    return j && states.includes(j.state) ? j : undefined;
  });

// Issue #24: an interrupted job was re-dispatched without counting an attempt, so a job that
// crashes its agent froze its guest again and again. A lost run now uses an attempt; a re-attach
// to a run the agent still has is the same attempt.
describe("interrupted jobs: a lost run uses an attempt, a re-attach does not", () => {
  it("a job whose agent dies mid-job every time fails after maxAttempts, saying it was interrupted", async () => {
    const c = await startTestCoordinator({ maxAttempts: 3 });
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1")], { durationMs: 30_000 });
    try {
      await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
      await agent.start(c.address);
      await c.admin().applyPolicy({ yaml: POLICY });
      const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "", mode: 0 });
      for (let run = 1; run <= 3; run++) {
        await eventually(`run ${run} on the agent`, async () => agent.jobs.runningJobIds().includes(jobId));
        expect((await c.running.ctx.store.getJob(jobId))?.attempt).toBe(run);
        await agent.kill(); // the job crashes its agent
        await jobIn(c, jobId, ["interrupted"]);
        await agent.start(c.address); // restarted by its supervisor
      }
      const failed = await jobIn(c, jobId, ["failed"]);
      expect(failed.reason).toMatch(
        /^interrupted 3 times \(last: .*(lost the agent|host kvm-1 lost).*\); not retried/,
      );
      expect(failed.attempt).toBe(3);
      expect(agent.runs.get(jobId)).toBe(3); // never a fourth freeze
      await new Promise((r) => setTimeout(r, 500));
      expect(agent.runs.get(jobId)).toBe(3);
    } finally {
      await agent.dispose();
      await c.dispose();
    }
  });

  it("a job still running on its agent is re-attached under the same attempt (coordinator restart)", async () => {
    const c = await startTestCoordinator({ maxAttempts: 1 });
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1")], { durationMs: 4000 });
    try {
      await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
      await agent.start(c.address);
      await c.admin().applyPolicy({ yaml: POLICY });
      const { jobId } = await c.admin().backupNow({ vm: "vm-1", policy: "", mode: 0 });
      await eventually("running on the agent", async () => agent.jobs.runningJobIds().includes(jobId));
      await c.restart(); // loses sight of the job; the agent keeps running it
      const done = await jobIn(c, jobId, ["succeeded", "failed"]);
      expect(done.state).toBe("succeeded"); // with maxAttempts 1, a counted attempt would have failed it
      expect(done.attempt).toBe(1);
      expect((done as { interruptions?: number }).interruptions ?? 0).toBe(0);
      expect(agent.runs.get(jobId)).toBe(1);
    } finally {
      await agent.dispose();
      await c.dispose();
    }
  });
});
