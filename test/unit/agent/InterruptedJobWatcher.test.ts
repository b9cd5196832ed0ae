import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type JobRecord,
  ownerAlive,
  processStartTime,
  writeJobRecord,
} from "../../../agent/src/backup/jobRecord.js";
import { InterruptedJobWatcher } from "../../../agent/src/recovery/InterruptedJobWatcher.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { FakeHypervisor } from "../../support/fakes/FakeHypervisor.js";

const log = createLogger("test", "silent");
let workDir: string;
const running: ReturnType<typeof execa>[] = [];

async function job(id: string, rec: Partial<JobRecord> | undefined): Promise<void> {
  const dir = join(workDir, "jobs", id);
  await mkdir(dir, { recursive: true });
  if (rec)
    await writeJobRecord(dir, { jobId: id, domain: "gone", checkpoint: null, sealed: false, pid: 0, ...rec });
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = execa("true");
  await p;
  return p.pid!;
}

beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), "cairn-watch-"));
});
afterEach(async () => {
  for (const p of running.splice(0)) p.kill("SIGKILL");
  await rm(workDir, { recursive: true, force: true });
});

describe("job owners", () => {
  it("a record's owner is alive only while its pid runs with the recorded start time", async () => {
    const start = processStartTime(process.pid);
    expect(start).toBeGreaterThan(0);
    expect(ownerAlive({ pid: process.pid, pidStart: start! })).toBe(true);
    expect(ownerAlive({ pid: process.pid, pidStart: start! + 1 })).toBe(false); // a reused pid
    expect(ownerAlive({ pid: await deadPid() })).toBe(false);
  });
});

describe("InterruptedJobWatcher", () => {
  it("cleans up jobs whose owner died (or whose pid was reused), leaves running and fresh ones alone", async () => {
    const sleeper = execa("sleep", ["60"], { reject: false });
    running.push(sleeper);
    await job("dead", { pid: await deadPid() });
    await job("reused", { pid: sleeper.pid!, pidStart: 1 });
    await job("alive", { pid: sleeper.pid! });
    await job("ours", { pid: process.pid });
    await job("planning", undefined); // made a moment before its record
    const w = new InterruptedJobWatcher({ hypervisor: new FakeHypervisor([]), log }, workDir, {
      intervalMs: 60_000,
      retryAfterMs: 60_000,
      recordlessAfterMs: 60_000,
    });
    const recovered = await w.pass();
    expect(recovered.map((r) => r.jobId).sort()).toEqual(["dead", "reused"]);
    expect((await readdir(join(workDir, "jobs"))).sort()).toEqual(["alive", "ours", "planning"]);
    expect(await w.pass()).toEqual([]);
  });

  it("a record-less directory is a leftover once old enough", async () => {
    await job("orphan", undefined);
    const w = new InterruptedJobWatcher({ hypervisor: new FakeHypervisor([]), log }, workDir, {
      intervalMs: 60_000,
      retryAfterMs: 60_000,
      recordlessAfterMs: 0,
    });
    expect((await w.pass()).map((r) => r.jobId)).toEqual(["orphan"]);
    expect(await readdir(join(workDir, "jobs"))).toEqual([]);
  });
});
