import { describe, expect, it } from "vitest";
import { chainHistory } from "../../coordinator/src/jobs/chainHistory.js";
import type {
  JobRecord,
  LedgerEntry,
  LedgerWrite,
  ReachRecord,
  VmRecord,
} from "../../coordinator/src/store/records.js";
import type { Store } from "../../coordinator/src/store/Store.js";

export function sampleJob(over: Partial<JobRecord> = {}): JobRecord {
  return {
    id: "job-1",
    kind: "backup",
    vmUuid: "u1",
    vmName: "vm1",
    hostId: "h1",
    policy: "p1",
    repository: "main",
    mode: "full",
    quiesce: "preferred",
    trigger: "manual",
    state: "queued",
    attempt: 1,
    maxAttempts: 3,
    reason: "backup now",
    priority: 50,
    limits: { perHost: 2, perRepository: 4, global: 8 },
    bandwidthBytesPerSecond: 0,
    createdMs: 1000,
    updatedMs: 1000,
    notBeforeMs: 0,
    startedMs: null,
    finishedMs: null,
    snapshotId: null,
    diskKinds: {},
    phase: "",
    ...over,
  };
}

const vm = (uuid: string, name: string): Omit<VmRecord, "hostId" | "lastBackupMs"> => ({
  uuid,
  name,
  state: "running",
  labels: { tier: "prod" },
  disks: [{ target: "vda", format: "qcow2", virtualSize: 1 << 20 }],
  present: true,
  updatedMs: 0,
});

/**
 * The Store contract (coordinator/src/store/Store.ts). `open` returns a fresh, empty store;
 * `reopen`, when given, reopens the same durable store (for persistence checks).
 */
export function storeContract(
  name: string,
  open: () => Promise<Store>,
  reopen?: (s: Store) => Promise<Store>,
) {
  describe(`Store contract: ${name}`, () => {
    it("hosts: put, get copies, touch, status", async () => {
      const s = await open();
      expect(await s.getHost("h1")).toBeUndefined();
      expect(await s.touchHost("h1", 5)).toBe(false);
      await s.putHost({
        id: "h1",
        hostname: "kvm1",
        agentAddress: "127.0.0.1:1",
        status: "lost",
        lastSeenMs: 1,
        enrolledMs: 1,
        inventory: {},
      });
      const h = await s.getHost("h1");
      if (!h) throw new Error("missing");
      h.hostname = "changed";
      expect((await s.getHost("h1"))?.hostname).toBe("kvm1");
      expect(await s.touchHost("h1", 99)).toBe(true);
      expect(await s.getHost("h1")).toMatchObject({ status: "online", lastSeenMs: 99 });
      await s.setHostStatus("h1", "lost");
      expect((await s.listHosts()).map((x) => x.status)).toEqual(["lost"]);
      await expect(s.setHostStatus("nope", "lost")).rejects.toMatchObject({ code: "not-found" });
      await s.close();
    });

    it("inventory follows migration and marks vanished VMs not present, never another host's", async () => {
      const s = await open();
      await s.applyInventory("h1", [vm("u1", "a"), vm("u2", "b")], 10);
      await s.setVmLastBackup("u1", 77);
      // u1 migrates to h2: h2 reports it, then h1 reports without it.
      await s.applyInventory("h2", [vm("u1", "a")], 20);
      await s.applyInventory("h1", [], 30);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "h2", present: true, lastBackupMs: 77 });
      expect(await s.getVm("b")).toMatchObject({ uuid: "u2", hostId: "h1", present: false });
      expect((await s.listVms("h2")).map((v) => v.uuid)).toEqual(["u1"]);
      // An "undefined" event from the migration source does not hide the VM on its new host.
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "h1", state: "shutoff", present: false }], 40);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "h2", present: true });
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "h2", state: "shutoff", present: true }], 50);
      expect(await s.getVm("a")).toMatchObject({ state: "shutoff", labels: { tier: "prod" } });
      // An event without a name keeps the VM's name; every event stamps updatedMs; labels, disks and
      // the last backup survive; an event for an unknown VM creates it.
      await s.applyVmUpdates([{ uuid: "u1", name: "", hostId: "h2", state: "running", present: true }], 60);
      expect(await s.getVm("u1")).toMatchObject({
        name: "a",
        state: "running",
        updatedMs: 60,
        present: true,
        lastBackupMs: 77,
        labels: { tier: "prod" },
      });
      expect(
        await s.applyVmUpdates(
          [{ uuid: "u9", name: "new", hostId: "h3", state: "running", present: true }],
          70,
        ),
      ).toBe(1);
      expect(await s.getVm("new")).toMatchObject({
        uuid: "u9",
        hostId: "h3",
        labels: {},
        disks: [],
        present: true,
      });
      expect((await s.listVms("h3")).map((v) => v.uuid)).toEqual(["u9"]);
      await s.close();
    });

    it("a VM is owned by the host where it runs, whatever order the reports arrive in", async () => {
      const s = await open();
      await s.applyInventory("A", [vm("u1", "a")], 10);
      // Migration A -> B, the destination's events first: B runs it; A's later events (its QEMU
      // stopped, its definition gone or left inactive) must not take it back.
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "B", state: "paused", present: true }], 20);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "A", state: "running" }); // incoming, not yet running
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "B", state: "running", present: true }], 21);
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "A", state: "shutoff", present: true }], 22);
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "A", state: "", present: false }], 23);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "B", state: "running", present: true });
      // A restarted agent on A that still has an inactive definition registers: B keeps it.
      await s.applyInventory("A", [{ ...vm("u1", "a"), state: "shutoff" }], 30);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "B", state: "running", present: true });
      expect((await s.listVms("A")).map((v) => v.uuid)).toEqual([]);
      // A report older than the owner's last change does not move it either.
      await s.applyVmUpdates(
        [{ uuid: "u1", name: "a", hostId: "A", state: "running", present: true, atMs: 5 }],
        40,
      );
      expect(await s.getVm("u1")).toMatchObject({ hostId: "B" });
      // The same migration with the source's events first ends the same way.
      await s.applyInventory("A", [vm("u2", "b")], 50);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "A", state: "paused", present: true }], 51);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "A", state: "shutoff", present: true }], 52);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "B", state: "running", present: true }], 53);
      expect(await s.getVm("u2")).toMatchObject({ hostId: "B", state: "running" });
      // Shut off on its owner, then started on another host: it moves there.
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "B", state: "shutoff", present: true }], 60);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "A", state: "running", present: true }], 61);
      expect(await s.getVm("u2")).toMatchObject({ hostId: "A", state: "running" });
      await s.close();
    });

    it("a VM running on its online owner is not taken by another host's claim: audited, and granted once the owner stops it or goes offline", async () => {
      const s = await open();
      const online = (id: string) =>
        s.putHost({
          id,
          hostname: id,
          agentAddress: "127.0.0.1:1",
          status: "online",
          lastSeenMs: 1,
          enrolledMs: 1,
          inventory: {},
        });
      await online("A");
      await online("B");
      await online("C");
      await s.applyInventory("A", [vm("u1", "a"), vm("u2", "b")], 10);
      // B's registration claims u1 while A, online, still runs it: A keeps it, the conflict is audited.
      await s.applyInventory("B", [vm("u1", "a")], 20);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "A", state: "running" });
      // The same by an event, and again (audited once per claimant).
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "B", state: "running", present: true }], 21);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "A" });
      const conflicts = (await s.listAudit(50)).filter((e) => e.action === "VmClaimConflict");
      expect(conflicts).toHaveLength(1);
      expect(conflicts[0]).toMatchObject({ principal: "agent:B", target: "u1" });
      expect(conflicts[0]?.detail).toMatch(/B reports it running while A, online, still runs it/);
      // A stops running it (a migration's source, or the VM really moved): B, which runs it, takes it.
      await s.applyVmUpdates([{ uuid: "u1", name: "a", hostId: "A", state: "shutoff", present: true }], 30);
      expect(await s.getVm("u1")).toMatchObject({ hostId: "B", state: "running", present: true });
      const moved = (await s.listAudit(50)).find((e) => e.action === "VmMoved" && e.target === "u1");
      expect(moved?.detail).toMatch(/moves from A to B/);
      // A claim withdrawn (C stops reporting it running) is never granted.
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "C", state: "running", present: true }], 40);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "C", state: "", present: false }], 41);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "A", state: "shutoff", present: true }], 42);
      expect(await s.getVm("u2")).toMatchObject({ hostId: "A", state: "shutoff" });
      // An owner that goes offline hands a contested VM to its claimant.
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "A", state: "running", present: true }], 50);
      await s.applyVmUpdates([{ uuid: "u2", name: "b", hostId: "C", state: "running", present: true }], 51);
      expect(await s.getVm("u2")).toMatchObject({ hostId: "A" });
      await s.setHostStatus("A", "lost");
      expect(await s.getVm("u2")).toMatchObject({ hostId: "C", state: "running" });
      await s.close();
    });

    it("records each VM event against the host that saw it, even when it changes nothing", async () => {
      const s = await open();
      await s.applyInventory("A", [vm("u1", "a")], 10);
      await s.applyVmUpdates(
        [
          {
            uuid: "u1",
            name: "a",
            hostId: "B",
            state: "paused",
            present: true,
            atMs: 11,
            event: { kind: "started", detail: "migrated", fromLibvirt: true },
          },
          {
            uuid: "u1",
            name: "a",
            hostId: "B",
            state: "running",
            present: true,
            atMs: 12,
            event: { kind: "resumed", detail: "migrated", fromLibvirt: true },
          },
        ],
        20,
      );
      expect(await s.listVmEvents("u1", 10)).toEqual([
        { atMs: 12, vmUuid: "u1", hostId: "B", kind: "resumed", detail: "migrated", fromLibvirt: true },
        { atMs: 11, vmUuid: "u1", hostId: "B", kind: "started", detail: "migrated", fromLibvirt: true },
      ]);
      expect(await s.listVmEvents("u1", 1)).toHaveLength(1);
      expect(await s.listVmEvents("nope", 10)).toEqual([]);
      await s.close();
    });

    it("ledger: guarded batch writes, per-VM order, open entries across VMs, change log", async () => {
      const s = await open();
      const entry = (over: Partial<LedgerEntry>): LedgerEntry => ({
        vmUuid: "u1",
        checkpoint: "cairn-1",
        target: "vda",
        parent: null,
        bitmap: "cairn-1",
        xml: "",
        hostId: "A",
        snapshotId: null,
        jobId: "j1",
        repository: "main",
        kind: "full",
        state: "pending",
        reason: "job j1 makes it",
        createdMs: 100,
        changedMs: 100,
        ...over,
      });
      const one = async (writes: LedgerWrite[], reason: string, nowMs: number) => {
        const [err] = await s.writeLedger([{ writes, reason }], nowMs);
        if (err) throw err;
      };
      await one(
        [
          { entry: entry({}), from: null },
          { entry: entry({ target: "vdb" }), from: null },
        ],
        "made",
        100,
      );
      // A guarded write that does not match writes nothing of its batch; the other batches of the
      // same call are written.
      const results = await s.writeLedger(
        [
          {
            writes: [
              { entry: entry({ state: "committed", reason: "" }), from: "pending" },
              { entry: entry({ target: "vdb", state: "committed" }), from: "committed" },
            ],
            reason: "sealed",
          },
          { writes: [{ entry: entry({ vmUuid: "u2" }), from: null }], reason: "made" },
          { writes: [{ entry: entry({}), from: null }], reason: "again" },
        ],
        100,
      );
      expect(results.map((r) => (r as { code?: string } | undefined)?.code)).toEqual([
        "failed-precondition",
        undefined,
        "failed-precondition",
      ]);
      expect((await s.listLedger("u1")).map((e) => e.state)).toEqual(["pending", "pending"]);
      await one(
        [
          { entry: entry({ state: "committed", reason: "", xml: "<x/>" }), from: "pending" },
          { entry: entry({ target: "vdb", state: "committed", reason: "" }), from: "pending" },
          { entry: entry({ checkpoint: "cairn-0", createdMs: 50, state: "suspect" }), from: null },
        ],
        "sealed",
        120,
      );
      const ledger = await s.listLedger("u1");
      expect(ledger.map((e) => `${e.checkpoint}/${e.target}:${e.state}`)).toEqual([
        "cairn-0/vda:suspect",
        "cairn-1/vda:committed",
        "cairn-1/vdb:committed",
      ]);
      expect(ledger[1]?.xml).toBe("<x/>");
      expect(
        (await s.listLedgerInState(["pending", "suspect"])).map((e) => `${e.vmUuid}/${e.checkpoint}`),
      ).toEqual(["u1/cairn-0", "u2/cairn-1"]);
      expect([...(await s.vmsWithLiveChains(["u1", "u2", "u3", "u1"]))].sort()).toEqual(["u1", "u2"]);
      const changes = await s.ledgerChanges("u1", 10);
      expect(changes[0]).toMatchObject({ checkpoint: "cairn-0", from: "", to: "suspect", atMs: 120 });
      expect(changes.map((c) => `${c.target}:${c.from}>${c.to}:${c.reason}`)).toEqual([
        "vda:>suspect:job j1 makes it",
        "vdb:pending>committed:sealed",
        "vda:pending>committed:sealed",
        "vdb:>pending:job j1 makes it",
        "vda:>pending:job j1 makes it",
      ]);
      expect(await s.ledgerChanges("u1", 2)).toHaveLength(2);
      await s.close();
    });

    it("hosts: drain and undrain survive other host writes", async () => {
      const s = await open();
      await s.putHost({
        id: "h1",
        hostname: "h1",
        agentAddress: "127.0.0.1:1",
        status: "online",
        lastSeenMs: 1,
        enrolledMs: 1,
        inventory: {},
      });
      await s.setHostDrain("h1", { reason: "maintenance", sinceMs: 5 });
      await s.touchHost("h1", 9);
      expect(await s.getHost("h1")).toMatchObject({
        drain: { reason: "maintenance", sinceMs: 5 },
        lastSeenMs: 9,
      });
      await s.setHostDrain("h1", null);
      expect((await s.getHost("h1"))?.drain ?? null).toBeNull();
      await expect(s.setHostDrain("nope", null)).rejects.toMatchObject({ code: "not-found" });
      await s.close();
    });

    it("policies and repositories: created flag, delete, last fire, last error", async () => {
      const s = await open();
      const p = { name: "p1", yaml: "name: p1", createdMs: 1, updatedMs: 1, lastFireMs: null };
      expect(await s.putPolicy(p)).toBe(true);
      expect(await s.putPolicy({ ...p, updatedMs: 2 })).toBe(false);
      await s.setPolicyLastFire("p1", 500);
      expect(await s.getPolicy("p1")).toMatchObject({ updatedMs: 2, lastFireMs: 500 });
      await expect(s.setPolicyLastFire("nope", 1)).rejects.toMatchObject({ code: "not-found" });
      const maint = { verifyLastFireMs: 700, gcLastFireMs: null, verifyRuns: 3 };
      await s.setPolicyMaintenance("p1", maint);
      expect(await s.getPolicy("p1")).toMatchObject({ lastFireMs: 500, maintenance: maint });
      await expect(s.setPolicyMaintenance("nope", maint)).rejects.toMatchObject({ code: "not-found" });
      // A scheduling pass's error stays with the policy (and its fire times) until it is cleared.
      const error = { message: 'selector.globs.0: "[z-a]" is not a valid glob', atMs: 800 };
      await s.setPolicyError("p1", error);
      expect(await s.getPolicy("p1")).toMatchObject({
        lastFireMs: 500,
        maintenance: maint,
        lastError: error,
      });
      expect((await s.listPolicies()).find((x) => x.name === "p1")?.lastError).toEqual(error);
      await s.setPolicyLastFire("p1", 600);
      expect((await s.getPolicy("p1"))?.lastError).toEqual(error);
      await s.setPolicyError("p1", null);
      expect(await s.getPolicy("p1")).toMatchObject({ lastFireMs: 600, maintenance: maint });
      expect((await s.getPolicy("p1"))?.lastError).toBeUndefined();
      await expect(s.setPolicyError("nope", null)).rejects.toMatchObject({ code: "not-found" });
      expect(await s.deletePolicy("p1")).toBe(true);
      expect(await s.deletePolicy("p1")).toBe(false);
      expect(await s.putRepository({ name: "main", location: "/r", createdMs: 1 })).toBe(true);
      expect(await s.putRepository({ name: "main", location: "/r2", createdMs: 1 })).toBe(false);
      expect((await s.listRepositories()).map((r) => r.location)).toEqual(["/r2"]);
      await s.putRepository({ name: "main", location: "/r2", createdMs: 1, id: "b".repeat(32) });
      expect((await s.getRepository("main"))?.id).toBe("b".repeat(32));
      await s.close();
    });

    it("repository reach: newest per (host, repository id); id-less reports by name; id replaces id-less", async () => {
      const s = await open();
      const reach = (over: Partial<ReachRecord>): ReachRecord => ({
        repositoryId: "",
        name: "main",
        location: "/r",
        reachable: false,
        error: "",
        writeMiBs: 0,
        readMiBs: 0,
        probedMs: 1,
        hostId: "",
        ...over,
      });
      expect(await s.listReach()).toEqual([]);
      await s.putReach("h1", [reach({ error: "ENOENT" })]);
      expect(await s.listReach("h1")).toEqual([reach({ error: "ENOENT", hostId: "h1" })]);
      // The same repository opened later: the id-less failure of that name is gone.
      await s.putReach("h1", [
        reach({ repositoryId: "a".repeat(32), reachable: true, writeMiBs: 400, probedMs: 2 }),
      ]);
      await s.putReach("h2", [
        reach({ repositoryId: "a".repeat(32), location: "/san/r", reachable: true, probedMs: 3 }),
      ]);
      expect((await s.listReach("h1")).map((r) => [r.repositoryId, r.reachable, r.writeMiBs])).toEqual([
        ["a".repeat(32), true, 400],
      ]);
      // Newest report per (host, id) replaces the older one.
      await s.putReach("h1", [
        reach({ repositoryId: "a".repeat(32), reachable: true, writeMiBs: 90, probedMs: 4 }),
      ]);
      const all = await s.listReach();
      expect(all.map((r) => [r.hostId, r.location, r.writeMiBs])).toEqual([
        ["h1", "/r", 90],
        ["h2", "/san/r", 0],
      ]);
      all[0]!.writeMiBs = 1;
      expect((await s.listReach("h1"))[0]?.writeMiBs).toBe(90);
      await s.close();
    });

    it("jobs: insert once, guarded updates, transitions recorded, filters", async () => {
      const s = await open();
      await s.insertJob(sampleJob());
      await expect(s.insertJob(sampleJob())).rejects.toMatchObject({ code: "already-exists" });
      const j = sampleJob({ state: "running", updatedMs: 2000 });
      await s.updateJob(j, "queued", "dispatched");
      // A second writer that still believes the job is queued loses.
      await expect(s.updateJob(sampleJob({ state: "cancelled" }), "queued")).rejects.toMatchObject({
        code: "failed-precondition",
      });
      await expect(s.updateJob(sampleJob({ id: "nope" }), "queued")).rejects.toMatchObject({
        code: "not-found",
      });
      await s.insertJob(sampleJob({ id: "job-2", vmUuid: "u2", createdMs: 3000 }));
      expect((await s.listJobs({ states: ["running"] })).map((x) => x.id)).toEqual(["job-1"]);
      expect((await s.listJobs()).map((x) => x.id)).toEqual(["job-2", "job-1"]);
      expect((await s.listJobs({ vmUuid: "u2" })).map((x) => x.id)).toEqual(["job-2"]);
      expect((await s.listJobs({ limit: 1 })).length).toBe(1);
      expect(await s.countJobs(["running", "queued", "failed"])).toEqual({
        running: 1,
        queued: 1,
        failed: 0,
      });
      expect(await s.countJobs([])).toEqual({});
      expect((await s.jobHistory("job-1")).map((t) => `${t.from}>${t.to}:${t.reason}`)).toEqual([
        ">queued:backup now",
        "queued>running:dispatched",
      ]);
      await s.close();
    });

    it("restore jobs keep their request and outcome, and never count in a policy's chain", async () => {
      const s = await open();
      const task = {
        request: { snapshotId: "20261122T080000Z-0123abcd", inPlace: true },
        location: "/srv/r",
      };
      const restore = {
        vm: { domainName: "vm1", inPlace: true, disks: [{ target: "vda", path: "/img/vm1.qcow2" }] },
      };
      const job = sampleJob({
        kind: "restore-vm",
        policy: null,
        task,
        snapshotId: "20261122T080000Z-0123abcd",
      });
      await s.insertJob(job);
      await s.updateJob({ ...job, state: "running" }, "queued", "dispatched");
      await s.updateJob({ ...job, state: "succeeded", restore, finishedMs: 5 }, "running", "restored");
      expect(await s.getJob("job-1")).toEqual({ ...job, state: "succeeded", restore, finishedMs: 5 });
      expect((await s.listJobs({ vmUuid: "u1", states: ["succeeded"] }))[0]).toMatchObject({
        kind: "restore-vm",
        restore,
      });
      expect((await s.chainHistories("p1")).size).toBe(0);
      await s.close();
    });

    it("chain histories follow a policy's jobs as they succeed, as chainHistory() computes them", async () => {
      const s = await open();
      let t = 0;
      const succeed = async (
        id: string,
        vm: string,
        mode: JobRecord["mode"],
        over: Partial<JobRecord> = {},
      ) => {
        const j = sampleJob({ id, vmUuid: vm, mode, policy: "p", createdMs: ++t, ...over });
        await s.insertJob(j);
        await s.updateJob({ ...j, state: "running", updatedMs: ++t }, "queued");
        const done = { ...j, state: "succeeded" as const, updatedMs: ++t, finishedMs: t };
        await s.updateJob(done, "running");
        return done;
      };
      expect(await s.chainHistories("p")).toEqual(new Map());
      await succeed("a1", "a", "full");
      await succeed("a2", "a", "incremental");
      // A maintenance job of the same policy is no link of any chain.
      await succeed("maint-1", "", "auto", { kind: "prune" });
      expect((await s.chainHistories("p")).get("a")).toEqual({ fullCount: 1, runsSinceFull: 1 });
      expect((await s.chainHistories("p")).has("")).toBe(false);
      // An incremental the agent demoted to full on every disk restarts the chain.
      await succeed("a3", "a", "incremental", { diskKinds: { vda: "full: bitmap inconsistent" } });
      const a4 = await succeed("a4", "a", "incremental", {
        diskKinds: { vda: "incremental", vdb: "full: new" },
      });
      // Rewriting a succeeded job (e.g. its phase) does not count it again.
      await s.updateJob({ ...a4, phase: "done" }, "succeeded");
      // Not counted: another policy's, a manual job without a policy, a failed one.
      await succeed("q1", "a", "full", { policy: "q" });
      await succeed("m1", "a", "full", { policy: null });
      const f = sampleJob({ id: "f1", vmUuid: "a", mode: "full", policy: "p", state: "running" });
      await s.insertJob(f);
      await s.updateJob({ ...f, state: "failed" }, "running");
      // Inserted already succeeded (an import): counted too.
      await s.insertJobs([
        sampleJob({ id: "b1", vmUuid: "b", mode: "incremental", state: "succeeded", policy: "p" }),
      ]);
      const want = new Map([
        ["a", { fullCount: 2, runsSinceFull: 1 }],
        ["b", { fullCount: 0, runsSinceFull: 1 }],
      ]);
      expect(await s.chainHistories("p")).toEqual(want);
      expect(chainHistory(await s.listJobs({ states: ["succeeded"] }), "p")).toEqual(want);
      expect(await s.chainHistories("q")).toEqual(new Map([["a", { fullCount: 1, runsSinceFull: 0 }]]));
      await s.close();
    });

    it("snapshots: index, filter, delete", async () => {
      const s = await open();
      const snap = {
        id: "s1",
        repository: "main",
        vmUuid: "u1",
        vmName: "a",
        jobId: "j",
        policy: null,
        createdMs: 5,
        logicalBytes: 10,
        bytesStored: 3,
        kinds: { vda: "full" },
      };
      await s.putSnapshot(snap);
      // The manifest comes back with the one snapshot asked for, not with every listed one.
      await s.putSnapshot({ ...snap, id: "s2", vmUuid: "u2", createdMs: 6, manifestJson: '{"id":"s2"}' });
      expect((await s.getSnapshot("s2"))?.manifestJson).toBe('{"id":"s2"}');
      expect((await s.getSnapshot("s1"))?.manifestJson).toBeUndefined();
      expect((await s.listSnapshots({ vmUuid: "u2" }))[0]?.manifestJson).toBeUndefined();
      expect((await s.listSnapshots({ vmUuid: "u2" })).map((x) => x.id)).toEqual(["s2"]);
      expect((await s.listSnapshots({ repository: "main" })).map((x) => x.id)).toEqual(["s1", "s2"]);
      await s.deleteSnapshots(["s1"]);
      expect(await s.getSnapshot("s1")).toBeUndefined();
      await s.close();
    });

    it("an enrollment token is consumed at most once and not after it expires", async () => {
      const s = await open();
      const t = {
        hash: "h",
        name: "enroll kvm1",
        kind: "enrollment" as const,
        role: null,
        hostId: "kvm1",
        createdMs: 0,
        expiresMs: 100,
        usedMs: null,
      };
      await s.putToken(t);
      await s.putToken({ ...t, hash: "old", expiresMs: 10 });
      await s.putToken({ ...t, hash: "adm", kind: "admin", role: "viewer" });
      const results = await Promise.all([
        s.consumeEnrollmentToken("h", 50),
        s.consumeEnrollmentToken("h", 50),
      ]);
      expect(results.filter(Boolean).length).toBe(1);
      expect(await s.consumeEnrollmentToken("old", 50)).toBeUndefined();
      expect(await s.consumeEnrollmentToken("adm", 50)).toBeUndefined();
      expect(await s.consumeEnrollmentToken("unknown", 50)).toBeUndefined();
      await s.close();
    });

    it("audit: newest first, limited", async () => {
      const s = await open();
      for (let i = 0; i < 5; i++)
        await s.appendAudit({
          atMs: i,
          principal: "admin:root",
          action: "ApplyPolicy",
          target: `p${i}`,
          detail: "",
        });
      expect((await s.listAudit(2)).map((e) => e.target)).toEqual(["p4", "p3"]);
      await s.close();
    });

    if (reopen)
      it("everything written is there after reopening", async () => {
        const s = await open();
        await s.insertJob(sampleJob());
        await s.updateJob(sampleJob({ state: "running" }), "queued");
        await s.appendAudit({ atMs: 1, principal: "p", action: "a", target: "t", detail: "" });
        await s.insertJob(sampleJob({ id: "job-2", state: "succeeded", policy: "p" }));
        const again = await reopen(s);
        expect(await again.getJob("job-1")).toMatchObject({ state: "running" });
        expect(await again.chainHistories("p")).toEqual(
          new Map([["u1", { fullCount: 1, runsSinceFull: 0 }]]),
        );
        expect((await again.listAudit(10)).length).toBe(1);
        await again.close();
      });
  });
}
