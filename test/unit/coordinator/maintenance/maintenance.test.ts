import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JobHub } from "../../../../coordinator/src/jobs/JobHub.js";
import { chooseMaintenanceHost } from "../../../../coordinator/src/maintenance/chooseMaintenanceHost.js";
import { describeReport } from "../../../../coordinator/src/maintenance/describeReport.js";
import { holdBackForExclusive } from "../../../../coordinator/src/maintenance/holdBackForExclusive.js";
import { Maintenance, verifySlices } from "../../../../coordinator/src/maintenance/Maintenance.js";
import { storeTask, wireTask } from "../../../../coordinator/src/maintenance/maintenanceTask.js";
import { DEFAULT_POLICY_LIMITS } from "../../../../coordinator/src/policy/Policy.js";
import { PolicyCache } from "../../../../coordinator/src/scheduler/PolicyCache.js";
import { SqliteStore } from "../../../../coordinator/src/store/sqlite/SqliteStore.js";
import { createLogger } from "../../../../shared/src/log/createLogger.js";
import { inSlice } from "../../../../shared/src/repository/verify/verifyRepository.js";

describe("which agent runs a maintenance job", () => {
  const online = new Set(["kvm-1", "kvm-2", "kvm-3"]);
  it("the host asked for, only while it is online", () => {
    expect(
      chooseMaintenanceHost({ requested: "kvm-2", online, recent: [], repository: "main" })?.hostId,
    ).toBe("kvm-2");
    expect(
      chooseMaintenanceHost({ requested: "kvm-9", online, recent: [], repository: "main" }),
    ).toBeUndefined();
  });
  it("else the online host whose job last reached that repository, else the first online host", () => {
    const recent = [
      { hostId: "kvm-9", repository: "main" }, // offline now
      { hostId: "kvm-1", repository: "other" },
      { hostId: "kvm-3", repository: "main" },
    ];
    const pick = chooseMaintenanceHost({ requested: "", online, recent, repository: "main" });
    expect(pick).toEqual({ hostId: "kvm-3", reason: "its last job reached repository main" });
    expect(chooseMaintenanceHost({ requested: "", online, recent, repository: "new" })?.hostId).toBe("kvm-1");
    expect(
      chooseMaintenanceHost({ requested: "", online: new Set(), recent, repository: "main" }),
    ).toBeUndefined();
  });
});

describe("writer preference for prune and GC", () => {
  it("holds back new backups of a repository while a prune or GC runs on it, nothing else", () => {
    const queued = [
      { id: "b-main", kind: "backup" as const, repository: "main" },
      { id: "b-other", kind: "backup" as const, repository: "other" },
      { id: "verify-main", kind: "verify" as const, repository: "main" },
    ];
    const ids = (active: { kind: "backup" | "prune" | "gc" | "verify"; repository: string }[]) =>
      holdBackForExclusive(queued, active).map((j) => j.id);
    expect(ids([{ kind: "gc", repository: "main" }])).toEqual(["b-other", "verify-main"]);
    expect(ids([{ kind: "prune", repository: "other" }])).toEqual(["b-main", "verify-main"]);
    expect(
      ids([
        { kind: "verify", repository: "main" },
        { kind: "backup", repository: "main" },
      ]),
    ).toEqual(["b-main", "b-other", "verify-main"]);
  });
});

describe("verify slices", () => {
  it("readData percent → slices per full pass", () => {
    expect([0, 1, 10, 33, 50, 100].map(verifySlices)).toEqual([0, 100, 10, 3, 2, 1]);
  });
  it("every chunk id falls in exactly one slice, so N runs read every chunk once", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{64}$/), fc.integer({ min: 1, max: 100 }), (id, count) => {
        const hits = Array.from({ length: count }, (_, index) => inSlice(id, { index, count })).filter(
          Boolean,
        );
        expect(hits).toHaveLength(1);
      }),
    );
  });
});

describe("maintenance tasks in job records", () => {
  it("a stored task reads back as the same wire task", () => {
    const task = storeTask("prune", {
      targets: [
        { vmUuid: "u1", retention: { keepLast: 2, hourly: 0, daily: 7, weekly: 0, monthly: 0, yearly: 0 } },
      ],
      dryRun: true,
    });
    const w = wireTask({ id: "j", kind: "prune", task: JSON.parse(JSON.stringify(task)) });
    expect(w).toEqual({
      $case: "prune",
      value: {
        targets: [
          { vmUuid: "u1", retention: { keepLast: 2, hourly: 0, daily: 7, weekly: 0, monthly: 0, yearly: 0 } },
        ],
        dryRun: true,
      },
    });
    expect(() => wireTask({ id: "j", kind: "backup", task: undefined })).toThrow(/not maintenance/);
  });
  it("a verify that found problems fails its job, with the first problem in the reason", () => {
    const v = (ok: boolean) =>
      describeReport({
        report: {
          $case: "verify",
          value: {
            ok,
            snapshotsChecked: 2n,
            chunksChecked: 10n,
            chunksRead: 1n,
            readDataSlice: 3,
            readDataSlices: 10,
            problems: ok ? [] : ["corrupt-chunk s1/vda: bad tag"],
          },
        },
      });
    expect(v(true)).toEqual({ ok: true, summary: "verified: 2 snapshots, 10 chunks, 1 read (slice 4/10)" });
    expect(v(false).ok).toBe(false);
    expect(v(false).summary).toMatch(/1 problem .*first: corrupt-chunk s1\/vda/);
    expect(describeReport({ report: undefined }).ok).toBe(false);
  });
});

describe("Maintenance", () => {
  const POLICY = (extra: string) =>
    `name: p\nselector: {names: [a]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental}\nrepository: main\n${extra}`;
  async function setup(now: { ms: number }) {
    const store = SqliteStore.open(":memory:");
    const policies = new PolicyCache(createLogger("t", "silent"), DEFAULT_POLICY_LIMITS);
    const audit: string[] = [];
    const m = new Maintenance({
      store,
      hub: new JobHub(),
      policies,
      log: createLogger("t", "silent"),
      now: () => now.ms,
      maxAttempts: 3,
      audit: async (_p, action, target, detail) => void audit.push(`${action} ${target} ${detail}`),
      kick: () => {},
    });
    return { store, policies, m, audit };
  }

  it("fires scheduled verifies with a new slice each run and GC, once per fire", async () => {
    const now = { ms: Date.parse("2026-12-06T00:00:00Z") };
    const { store, m } = await setup(now);
    await store.putPolicy({
      name: "p",
      yaml: POLICY('maintenance: {verify: "0 4 * * *", readData: 25%, gc: "0 5 * * 0"}\n'),
      createdMs: now.ms,
      updatedMs: now.ms,
      lastFireMs: null,
    });
    expect(await m.fireDue(await store.listPolicies(), now.ms)).toEqual([]);
    const slices: number[] = [];
    for (let day = 0; day < 5; day++) {
      now.ms = Date.parse(`2026-12-${String(6 + day).padStart(2, "0")}T06:00:00Z`);
      const jobs = await m.fireDue(await store.listPolicies(), now.ms);
      expect(await m.fireDue(await store.listPolicies(), now.ms)).toEqual([]); // the same fire never twice
      const verify = jobs.find((j) => j.kind === "verify");
      const w = verify && wireTask(verify);
      if (w?.$case !== "verify") throw new Error("no verify fired");
      expect(w.value).toMatchObject({ readData: true, readDataSlices: 4 });
      slices.push(w.value.readDataSlice);
      // 2026-12-06 is a Sunday: GC fires that day only.
      expect(jobs.some((j) => j.kind === "gc")).toBe(day === 0);
      expect(jobs.every((j) => j.repository === "main" && j.vmUuid === "" && j.hostId === "")).toBe(true);
    }
    expect(slices).toEqual([0, 1, 2, 3, 0]);
  });

  it("retention after scheduled backups collects every VM into one queued prune job", async () => {
    const now = { ms: 1_000 };
    const { store, policies, m } = await setup(now);
    const rec = {
      name: "p",
      yaml: POLICY("retention: {keepLast: 2}\n"),
      createdMs: 1,
      updatedMs: 1,
      lastFireMs: null,
    };
    const policy = policies.get(rec);
    if (!policy) throw new Error("policy did not parse");
    const backup = { repository: "main" } as Parameters<Maintenance["afterBackup"]>[0];
    await Promise.all([
      m.afterBackup({ ...backup, vmUuid: "u1" }, policy),
      m.afterBackup({ ...backup, vmUuid: "u2" }, policy),
      m.afterBackup({ ...backup, vmUuid: "u1" }, policy),
    ]);
    const prunes = (await store.listJobs({})).filter((j) => j.kind === "prune");
    expect(prunes).toHaveLength(1);
    const w = wireTask(prunes[0] as (typeof prunes)[0]);
    expect(w.$case === "prune" && w.value.targets.map((t) => t.vmUuid).sort()).toEqual(["u1", "u2"]);
    // Once the scheduler has started it, the next VM gets a prune job of its own.
    const started = prunes[0] as (typeof prunes)[0];
    await store.updateJob({ ...started, state: "running" }, "queued");
    await m.afterBackup({ ...backup, vmUuid: "u3" }, policy);
    const queued = (await store.listJobs({ states: ["queued"] })).filter((j) => j.kind === "prune");
    expect(queued).toHaveLength(1);
    const q = wireTask(queued[0] as (typeof queued)[0]);
    expect(q.$case === "prune" && q.value.targets.map((t) => t.vmUuid)).toEqual(["u3"]);
  });
});

describe("package direction at run time", () => {
  it("no coordinator module opens a repository or a repository store", () => {
    // The coordinator must not need to reach repositories (LAN-free storage is visible to some hosts
    // only): what opens one lives in shared/ and is used by the agent and the CLI.
    const forbidden = [/repository\/Repository\.js/, /repositoryLocation\//, /repository\/backends\//];
    const root = join(import.meta.dirname, "../../../../coordinator/src");
    const offenders: string[] = [];
    for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
      if (!e.isFile() || !e.name.endsWith(".ts")) continue;
      const path = join(e.parentPath, e.name);
      const imports = readFileSync(path, "utf8").match(/from "[^"]+"/g) ?? [];
      for (const i of imports) if (forbidden.some((f) => f.test(i))) offenders.push(`${path}: ${i}`);
    }
    expect(offenders).toEqual([]);
  });
});
