import { describe, expect, it } from "vitest";
import type { PolicyRecord } from "../../../coordinator/src/store/records.js";
import { cairnCli, coordinatorArgs } from "../../support/cairnCli.js";
import { eventually, startTestCoordinator, waitForJobEnd } from "../../support/coordinatorHarness.js";
import { SimAgent, simDomain } from "../../support/SimAgent.js";

const doc = (name: string, over: string) =>
  `name: ${name}\nselector: {names: [vm-2]}\nschedule: {cron: "*/5 * * * *"}\nmode: {kind: full}\nrepository: main\n${over}\n`;

// Issue 24 hole 3: one bad policy made every scheduling pass throw, so no other policy fired.
describe("policy isolation: a policy that cannot run is marked with why, and the others fire", () => {
  it("bad stored policies and one that throws while firing do not stop another policy's job", async () => {
    let now = Date.parse("2026-11-22T10:00:30Z");
    const c = await startTestCoordinator({}, { now: () => now, manualTicks: true });
    const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1"), simDomain(2, "vm-2")], { durationMs: 50 });
    const store = c.running.ctx.store;
    try {
      await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
      await agent.start(c.address);
      await c.admin().applyPolicy({ yaml: doc("z-good", "") });
      // Stored before validation existed (they are refused on apply now), sorted before the good one.
      const stored = (name: string, yaml: string): PolicyRecord => ({
        name,
        yaml,
        createdMs: now,
        updatedMs: now,
        lastFireMs: null,
      });
      await store.putPolicy(stored("a-glob", doc("a-glob", "").replace("names: [vm-2]", 'globs: ["[z-a]"]')));
      await store.putPolicy(stored("a-infinite", doc("a-infinite", `bandwidth: ${"9".repeat(400)}TiB/s`)));
      await store.putPolicy(stored("a-never", doc("a-never", "").replace("*/5 * * * *", "0 0 30 2 *")));
      // A valid policy whose firing throws (the store failing for it alone).
      await c.admin().applyPolicy({ yaml: doc("a-throws", "") });
      const chainHistories = store.chainHistories.bind(store);
      store.chainHistories = async (policy) => {
        if (policy === "a-throws") throw new Error("disk I/O error reading a-throws's chains");
        return chainHistories(policy);
      };

      now += 5 * 60_000; // every schedule above is due
      await eventually("the agent heartbeats at the new time", async () => {
        const h = await store.getHost("kvm-1");
        return h !== undefined && h.lastSeenMs >= now;
      });
      const r = (await c.running.tick()) as { created: number };
      expect(r.created).toBe(1);
      const [job] = (await store.listJobs({})).filter((j) => j.kind === "backup");
      expect(job).toMatchObject({ policy: "z-good", vmName: "vm-2" });
      expect((await waitForJobEnd(c, job?.id as string, 30_000)).state).toBe("succeeded");

      const listed = new Map((await c.admin().listPolicies({})).policies.map((p) => [p.name, p]));
      expect(listed.get("a-glob")?.lastError).toMatch(/selector\.globs\.0: "\[z-a\]" is not a valid glob/);
      expect(listed.get("a-infinite")?.lastError).toMatch(/bandwidth: must be bytes per second/);
      expect(listed.get("a-never")?.lastError).toMatch(/schedule\.cron: "0 0 30 2 \*" never fires/);
      expect(listed.get("a-throws")?.lastError).toBe("disk I/O error reading a-throws's chains");
      expect(listed.get("a-throws")?.lastErrorMs).toBe(BigInt(now));
      expect(listed.get("z-good")?.lastError).toBe("");

      // The operator sees it: `cairn policies list` and `show` (as a YAML comment above the document).
      const list = await cairnCli(["policies", "list", ...coordinatorArgs(c)]);
      expect(list.stdout).toMatch(/LAST ERROR/);
      expect(list.stdout).toMatch(/a-glob .*"\[z-a\]" is not a valid glob/);
      expect(list.stdout).toMatch(/z-good .* -\s*$/m);
      const show = await cairnCli(["policies", "show", "a-throws", ...coordinatorArgs(c)]);
      expect(show.stdout).toMatch(
        /^# the last scheduling pass could not run this policy: disk I\/O error reading a-throws's chains \(2026-11-22T10:05:30\.000Z\)\nname: a-throws\n/,
      );

      // Asked for by name, a policy that does not validate says why (it used to be "does not exist").
      await expect(c.admin().backupNow({ vm: "vm-1", policy: "a-glob", mode: 0 })).rejects.toMatchObject({
        code: "failed-precondition",
        message: expect.stringMatching(/"\[z-a\]" is not a valid glob/),
      });

      // The error is recorded once, not rewritten by every pass while it lasts.
      now += 1000;
      await c.running.tick();
      expect((await store.getPolicy("a-throws"))?.lastError?.atMs).toBe(now - 1000);

      // Fixed: the next pass runs it and clears the mark; re-applying a bad one clears its mark too.
      store.chainHistories = chainHistories;
      await c.running.tick();
      expect((await store.getPolicy("a-throws"))?.lastError).toBeUndefined();
      await c
        .admin()
        .applyPolicy({ yaml: doc("a-glob", "").replace("names: [vm-2]", 'globs: ["[a-z]*-1"]') });
      expect((await store.getPolicy("a-glob"))?.lastError).toBeUndefined();
    } finally {
      await agent.dispose();
      await c.dispose();
    }
  });
});
