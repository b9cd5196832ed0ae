import { describe, expect, it } from "vitest";
import { JobRegistry } from "../../../agent/src/jobs/JobRegistry.js";

/** A job that runs until aborted, then spends `cleanupMs` on cleanup (thaw, job end...). */
function startJob(jobs: JobRegistry, id: string, cleanupMs: number, log: string[]) {
  return jobs
    .start(id, `dom-${id}`, async (signal) => {
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
      await new Promise((r) => setTimeout(r, cleanupMs));
      log.push(`${id} cleaned up`);
      throw signal.reason;
    })
    .catch(() => {});
}

describe("JobRegistry.abortAndWait", () => {
  it("answers only after the aborted job's cleanup has run", async () => {
    const jobs = new JobRegistry();
    const log: string[] = [];
    void startJob(jobs, "j1", 150, log);
    const r = await jobs.abortAndWait("j1", "cancelled by admin", 5_000);
    expect(r).toEqual({ found: true, ended: true });
    expect(log).toEqual(["j1 cleaned up"]);
    expect(jobs.runningJobIds()).toEqual([]);
  });

  it("gives up waiting after its timeout (the cleanup goes on) and reports it", async () => {
    const jobs = new JobRegistry();
    const log: string[] = [];
    const done = startJob(jobs, "j2", 400, log);
    const t0 = Date.now();
    const r = await jobs.abortAndWait("j2", "x", 50);
    expect(r).toEqual({ found: true, ended: false });
    expect(Date.now() - t0).toBeLessThan(350);
    await done;
    expect(log).toEqual(["j2 cleaned up"]);
  });

  it("an unknown job is not found", async () => {
    expect(await new JobRegistry().abortAndWait("nope", "x", 10)).toEqual({ found: false, ended: true });
  });
});
