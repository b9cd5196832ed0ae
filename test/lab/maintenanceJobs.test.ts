import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobRecord } from "../../coordinator/src/store/records.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { S3ObjectStore } from "../../shared/src/repository/backends/S3ObjectStore.js";
import { PACKS_PREFIX } from "../../shared/src/repository/layout.js";
import type { ObjectStore } from "../../shared/src/repository/ports/ObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { SwiftServer } from "../services/swift/SwiftServer.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../support/coordinatorHarness.js";
import { LabAgent } from "./support/LabAgent.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";

// Repository maintenance as agent jobs, on a local and an S3 (Swift) repository, with a real agent
// daemon and real VMs: the coordinator itself opens neither repository.
const lab = new Lab();
let c: TestCoordinator;
let swift: SwiftServer;
let agent: LabAgent;
let vmA: LabVm;
let vmB: LabVm;
const stores: Record<string, ObjectStore> = {};

beforeAll(async () => {
  swift = await SwiftServer.start();
  c = await startTestCoordinator({ heartbeatIntervalSeconds: 1, lostAfterSeconds: 6 });
  const s3 = new S3ObjectStore({ ...swift.s3, bucket: "cairn-lab", prefix: "maint/" });
  await s3.ensureBucket();
  await (await Repository.init(s3, { chunkSize: 64 * 1024 })).close();
  stores["main"] = new LocalObjectStore(c.repoPath);
  stores["s3"] = s3;
  // The agent reads S3 credentials from its environment; the coordinator never sees them.
  agent = await LabAgent.enroll(c, "lab-host", {
    CAIRN_S3_ENDPOINT: swift.endpoint,
    AWS_ACCESS_KEY_ID: swift.accessKeyId,
    AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
    AWS_REGION: swift.region,
  });
  const disks = [{ kind: "blank" as const, format: "qcow2" as const, sizeMiB: 96, randomMiB: 64 }];
  [vmA, vmB] = await Promise.all([
    lab.createVm({ label: "maint-a", disks }),
    lab.createVm({ label: "maint-b", disks }),
  ]);
  await vmA.boot();
  await vmB.boot();
  await agent.start();
  await eventually("both VMs in the inventory", async () => {
    const names = (await c.admin().listVms({ hostId: "lab-host" })).vms.map((v) => v.name);
    return names.includes(vmA.name) && names.includes(vmB.name);
  });
  const reg = await c.admin().registerRepository({ name: "s3", location: "s3://cairn-lab/maint/" });
  expect((await waitJob(reg.scanJobId)).state).toBe("succeeded");
  for (const repo of ["main", "s3"]) {
    await c.admin().applyPolicy({
      yaml: `name: ${repo}-a\nselector: {names: [${vmA.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental}\nrepository: ${repo}\nretention: {keepLast: 1}\n`,
    });
    // Throttled so that its backup is still running while prune and GC are asked for.
    await c.admin().applyPolicy({
      yaml: `name: ${repo}-b\nselector: {names: [${vmB.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental}\nrepository: ${repo}\nbandwidth: 6MiB/s\n`,
    });
  }
}, 600_000);

afterAll(async () => {
  await agent?.kill();
  await lab.dispose();
  await c?.dispose();
  await swift?.stop();
});

function waitJob(jobId: string, timeoutMs = 300_000): Promise<JobRecord> {
  return eventually(
    `job ${jobId}`,
    async () => {
      const j = await c.running.ctx.store.getJob(jobId);
      return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
    },
    timeoutMs,
  );
}

/** Flips the middle byte of every pack (some hold chunks the snapshots reference); again undoes it. */
async function flipPacks(store: ObjectStore): Promise<void> {
  const signal = AbortSignal.timeout(60_000);
  for await (const o of store.list(PACKS_PREFIX, { signal })) {
    const bytes = Buffer.from(await store.get(o.key, { signal }));
    const at = bytes.length >> 1;
    bytes[at] = (bytes[at] as number) ^ 0xff;
    await store.put(o.key, bytes, { signal });
  }
}

describe.each(["main", "s3"])("maintenance jobs on repository %s", (repo) => {
  it("prune and GC run while a backup of another VM runs; verify reads it all back; a flipped byte fails verify", async () => {
    const admin = c.admin();
    const first = await waitJob(
      (await admin.backupNow({ vm: vmA.name, policy: `${repo}-a`, mode: 0 })).jobId,
    );
    expect(first.state).toBe("succeeded");
    await vmA.writeRandom("/dev/vda", 8 << 20, 4 << 20);
    const second = await waitJob(
      (await admin.backupNow({ vm: vmA.name, policy: `${repo}-a`, mode: 0 })).jobId,
    );
    expect(second.state).toBe("succeeded");

    const { jobId: bJobId } = await admin.backupNow({ vm: vmB.name, policy: `${repo}-b`, mode: 1 });
    await eventually(
      "B's backup reading",
      async () => (c.running.ctx.hub.getProgress(bJobId)?.bytesDone ?? 0) > 0,
      120_000,
    );
    const prune = await admin.pruneRepository({ name: repo, dryRun: false, host: "", wait: false });
    const gc = await admin.gcRepository({
      name: repo,
      dryRun: false,
      noRepack: false,
      host: "",
      wait: false,
    });
    const [b, p, g] = await Promise.all([
      waitJob(bJobId),
      waitJob(prune.job?.jobId ?? ""),
      waitJob(gc.job?.jobId ?? ""),
    ]);
    expect([b.state, p.state, g.state]).toEqual(["succeeded", "succeeded", "succeeded"]);
    // The prune was running on the agent (waiting for the repository's exclusive lock) while B's
    // backup held its shared lock: they overlapped, and neither broke the other.
    expect(p.hostId).toBe("lab-host");
    expect(p.startedMs ?? Number.POSITIVE_INFINITY).toBeLessThan(b.finishedMs ?? 0);
    const pruned = (c.running.ctx.store.getJob(p.id) as Promise<JobRecord>).then((j) => j.report);
    expect(JSON.stringify(await pruned)).toContain(first.snapshotId as string);
    const catalog = (await admin.listSnapshots({ vm: "", repository: repo })).snapshots.map(
      (s) => s.snapshotId,
    );
    expect(catalog).not.toContain(first.snapshotId);
    expect(catalog).toEqual(expect.arrayContaining([second.snapshotId, b.snapshotId]));

    const ok = await admin.verifyRepository({
      name: repo,
      readData: true,
      readDataPercent: 0,
      host: "",
      wait: true,
    });
    expect(ok.report).toMatchObject({ ok: true, problems: [] });
    expect(Number(ok.report?.chunksRead)).toBeGreaterThan(0);

    const store = stores[repo] as ObjectStore;
    await flipPacks(store);
    try {
      const bad = await admin.verifyRepository({
        name: repo,
        readData: true,
        readDataPercent: 0,
        host: "",
        wait: true,
      });
      expect(bad.report?.ok).toBe(false);
      expect(bad.report?.problems.join("\n")).toMatch(/corrupt-chunk/);
      expect(bad.job).toMatchObject({ kind: "verify", state: "failed", hostId: "lab-host" });
    } finally {
      await flipPacks(store);
    }
  });
});
