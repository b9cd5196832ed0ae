import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cairnCli, coordinatorArgs } from "../support/cairnCli.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../support/coordinatorHarness.js";
import { LabAgent } from "./support/LabAgent.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";

const lab = new Lab();
let c: TestCoordinator;
let vm: LabVm;
let agent: LabAgent;

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const b of createReadStream(path)) h.update(b as Buffer);
  return h.digest("hex");
}

beforeAll(async () => {
  c = await startTestCoordinator({ heartbeatIntervalSeconds: 1, lostAfterSeconds: 4 });
  agent = await LabAgent.enroll(c, "lab-host");
  vm = await lab.createVm({
    label: "fleet",
    disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 384, randomMiB: 320 }],
  });
  await vm.boot();
  await agent.start();
  await eventually("the VM in the coordinator's inventory", async () =>
    (await c.admin().listVms({ hostId: "lab-host" })).vms.some((v) => v.name === vm.name),
  );
  await c.admin().applyPolicy({
    yaml: `name: lab\nselector: {names: [${vm.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 7}\nrepository: main\n`,
  });
});
afterAll(async () => {
  await agent?.kill();
  await lab.dispose();
  await c?.dispose();
});

const waitJob = (jobId: string, timeoutMs = 240_000) =>
  eventually(
    `job ${jobId}`,
    async () => {
      const j = await c.running.ctx.store.getJob(jobId);
      return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
    },
    timeoutMs,
  );

describe("coordinator + real agent (mutual TLS) on a real VM", () => {
  it("full, guest writes, incremental through the coordinator; the restored disks match the guest", async () => {
    const full = await waitJob((await c.admin().backupNow({ vm: vm.name, policy: "", mode: 0 })).jobId);
    expect(full).toMatchObject({ state: "succeeded", mode: "full" });
    await vm.writeRandom("/dev/vdb", 100 << 20, 4 << 20);
    const incr = await waitJob((await c.admin().backupNow({ vm: vm.name, policy: "", mode: 0 })).jobId);
    expect(incr).toMatchObject({
      state: "succeeded",
      mode: "incremental",
      diskKinds: { vda: "incremental", vdb: "incremental" },
    });
    const snaps = (await c.admin().listSnapshots({ vm: vm.name, repository: "main" })).snapshots;
    expect(snaps.map((s) => s.snapshotId)).toEqual([full.snapshotId, incr.snapshotId]);
    const out = join(c.dir, "vdb.raw");
    const restored = await cairnCli([
      "restore",
      "disk",
      incr.snapshotId as string,
      "vdb",
      "--to",
      out,
      ...coordinatorArgs(c),
    ]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(await sha256File(out)).toBe(await vm.deviceHash("/dev/vdb"));
    // Both daemons' metrics saw the two jobs.
    const agentText = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    expect(agentText).toMatch(/^cairn_agent_jobs_total\{outcome="succeeded",reason=""\} 2$/m);
    expect(agentText).toMatch(/^cairn_agent_freeze_window_seconds_count 2$/m);
    const coordText = await (await fetch(`http://127.0.0.1:${c.running.metricsPort}/metrics`)).text();
    expect(coordText).toMatch(/^cairn_job_transitions_total\{kind="backup",to="succeeded"\} 2$/m);
    expect(Number(/^cairn_backup_bytes_read_total (\d+)/m.exec(coordText)?.[1])).toBeGreaterThan(320 << 20);
  });

  it("kill -9 of the agent mid-job: interrupted, retried after the agent's startup cleanup, succeeds", async () => {
    await vm.writeRandom("/dev/vdb", 0, 200 << 20);
    const { jobId } = await c.admin().backupNow({ vm: vm.name, policy: "", mode: 1 }); // full: long enough to kill
    await eventually(
      "reading",
      async () => (await c.running.ctx.store.getJob(jobId))?.state === "running",
      60_000,
    );
    await eventually(
      "agent reading",
      async () => (c.running.ctx.hub.getProgress(jobId)?.bytesDone ?? 0) > 0,
      60_000,
    );
    await agent.kill();
    await eventually(
      "interrupted",
      async () => (await c.running.ctx.store.getJob(jobId))?.state === "interrupted",
      30_000,
    );
    await agent.start(); // its startup recovery ends the libvirt job and removes the half-made checkpoint
    const done = await waitJob(jobId);
    expect(done.state).toBe("succeeded");
    const history = (await c.running.ctx.store.jobHistory(jobId)).map((h) => h.to);
    expect(history).toEqual(["queued", "running", "interrupted", "running", "succeeded"]);
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    const restored = join(c.dir, "vdb-after-crash.raw");
    const r = await cairnCli([
      "restore",
      "disk",
      done.snapshotId as string,
      "vdb",
      "--to",
      restored,
      ...coordinatorArgs(c),
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await sha256File(restored)).toBe(await vm.deviceHash("/dev/vdb"));
  });
});
