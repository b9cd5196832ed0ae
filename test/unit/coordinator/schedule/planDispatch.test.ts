import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ActiveJob,
  planDispatch,
  planDispatchWithReaders,
  type QueuedJob,
} from "../../../../coordinator/src/schedule/planDispatch.js";

const q = (id: string, over: Partial<QueuedJob> = {}): QueuedJob => ({
  id,
  vmUuid: `vm-${id}`,
  hostId: "h1",
  repository: "r",
  policy: "p",
  priority: 50,
  createdAtMs: 0,
  notBeforeMs: 0,
  limits: { perHost: 10, perRepository: 10, global: 10 },
  ...over,
});
const online = new Set(["h1", "h2", "h3"]);

describe("planDispatch", () => {
  it("priority, then age; skips retry waits, offline hosts and busy VMs", () => {
    const picked = planDispatch({
      queued: [
        q("old", { createdAtMs: 1 }),
        q("new", { createdAtMs: 5 }),
        q("urgent", { priority: 90, createdAtMs: 9 }),
        q("later", { notBeforeMs: 1000 }),
        q("offline", { hostId: "h9" }),
        q("busy", { vmUuid: "vm-x" }),
      ],
      active: [{ id: "a", vmUuid: "vm-x", hostId: "h2", repository: "r", policy: "p" }],
      onlineHosts: online,
      nowMs: 100,
    });
    expect(picked).toEqual(["urgent", "old", "new"]);
  });

  it("a job that does not fit does not block a later one that does", () => {
    const picked = planDispatch({
      queued: [
        q("a", { hostId: "h1", priority: 90, limits: { perHost: 1, perRepository: 9, global: 9 } }),
        q("b", { hostId: "h2" }),
      ],
      active: [{ id: "x", vmUuid: "vm-x", hostId: "h1", repository: "r", policy: "p" }],
      onlineHosts: online,
      nowMs: 0,
    });
    expect(picked).toEqual(["b"]);
  });

  const arb = fc.record({
    queued: fc.array(
      fc.record({
        id: fc.uuid(),
        vmUuid: fc.constantFrom("v1", "v2", "v3", "v4", "v5", "v6"),
        hostId: fc.constantFrom("h1", "h2", "h3", "h4"),
        repository: fc.constantFrom("r1", "r2"),
        policy: fc.constant("p"),
        priority: fc.integer({ min: 0, max: 3 }),
        createdAtMs: fc.integer({ min: 0, max: 10 }),
        notBeforeMs: fc.integer({ min: 0, max: 20 }),
        limits: fc.record({
          perHost: fc.integer({ min: 1, max: 3 }),
          perRepository: fc.integer({ min: 1, max: 4 }),
          global: fc.integer({ min: 1, max: 6 }),
        }),
      }),
      { maxLength: 30 },
    ),
    active: fc.array(
      fc.record({
        id: fc.uuid(),
        vmUuid: fc.constantFrom("v7", "v8", "v1"),
        hostId: fc.constantFrom("h1", "h2"),
        repository: fc.constantFrom("r1", "r2"),
        policy: fc.constant("p"),
      }),
      { maxLength: 4 },
    ),
  });

  it("never two jobs per VM, never past any picked job's limits, never a lower-priority job over a higher one that fits (property)", () => {
    fc.assert(
      fc.property(arb, ({ queued, active }) => {
        const input = { queued, active, onlineHosts: online, nowMs: 10 };
        const picked = planDispatch(input);
        const byId = new Map(queued.map((j) => [j.id, j]));
        const running: ActiveJob[] = [...active];
        for (const id of picked) {
          const j = byId.get(id) as QueuedJob;
          expect(running.some((a) => a.vmUuid === j.vmUuid)).toBe(false);
          expect(running.filter((a) => a.hostId === j.hostId).length).toBeLessThan(j.limits.perHost);
          expect(running.filter((a) => a.repository === j.repository).length).toBeLessThan(
            j.limits.perRepository,
          );
          expect(running.length).toBeLessThan(j.limits.global);
          expect(j.notBeforeMs).toBeLessThanOrEqual(10);
          expect(online.has(j.hostId)).toBe(true);
          running.push(j);
        }
        // Maximality: any eligible job left out would break a rule given what was picked.
        for (const j of queued) {
          if (picked.includes(j.id) || j.notBeforeMs > 10 || !online.has(j.hostId)) continue;
          const blocked =
            running.some((a) => a.vmUuid === j.vmUuid) ||
            running.filter((a) => a.hostId === j.hostId).length >= j.limits.perHost ||
            running.filter((a) => a.repository === j.repository).length >= j.limits.perRepository ||
            running.length >= j.limits.global;
          expect(blocked).toBe(true);
        }
        // Re-running with the picked jobs active starts nothing new.
        const again = planDispatch({
          ...input,
          queued: queued.filter((j) => !picked.includes(j.id)),
          active: running,
        });
        expect(again).toEqual([]);
      }),
    );
  });

  it("10,000 queued and 1,000 active in well under the pass budget", () => {
    const queued = Array.from({ length: 10_000 }, (_, i) =>
      q(`q${i}`, {
        hostId: `h${i % 1000}`,
        repository: `r${i % 10}`,
        limits: { perHost: 2, perRepository: 50, global: 200 },
      }),
    );
    const active = Array.from({ length: 1000 }, (_, i) => ({
      id: `a${i}`,
      vmUuid: `x${i}`,
      hostId: `h${i}`,
      repository: `r${i % 10}`,
      policy: "p",
    }));
    const hosts = new Set(Array.from({ length: 1000 }, (_, i) => `h${i}`));
    const t0 = performance.now();
    const picked = planDispatch({ queued, active, onlineHosts: hosts, nowMs: 1 });
    expect(performance.now() - t0).toBeLessThan(500);
    expect(picked.length).toBe(0); // global 200 < 1000 active
    const t1 = performance.now();
    const picked2 = planDispatch({ queued, active: [], onlineHosts: hosts, nowMs: 1 });
    expect(performance.now() - t1).toBeLessThan(500);
    expect(picked2.length).toBe(200);
  });
});

describe("planDispatch: readers (docs/transfer-paths.md §3)", () => {
  const limits = { perHost: 1, perRepository: 10, global: 10 };
  const q = (id: string, hostId: string, createdAtMs: number) => ({
    id,
    vmUuid: `vm-${id}`,
    hostId,
    repository: "main",
    policy: "p",
    priority: 50,
    createdAtMs,
    notBeforeMs: 0,
    limits,
  });

  it("a reader counts against its host's limit, for active and picked jobs", () => {
    const picks = planDispatchWithReaders({
      queued: [q("a", "kvm-1", 1), q("b", "kvm-2", 2), q("c", "kvm-3", 3)],
      active: [],
      onlineHosts: new Set(["kvm-1", "kvm-2", "kvm-3", "mover"]),
      nowMs: 10,
      // Every job wants the one mover: only the first gets it.
      assign: (_q, perHost) => ((perHost.get("mover") ?? 0) < 1 ? { readerHostId: "mover" } : undefined),
    });
    expect(picks).toEqual([{ id: "a", readerHostId: "mover" }]);
    const busy = planDispatchWithReaders({
      queued: [q("b", "kvm-2", 2)],
      active: [
        { id: "x", vmUuid: "vm-x", hostId: "kvm-1", repository: "main", policy: "p", readerHostId: "mover" },
      ],
      onlineHosts: new Set(["kvm-2", "mover"]),
      nowMs: 10,
      assign: () => ({ readerHostId: "mover" }),
    });
    expect(busy).toEqual([]);
  });

  it("a VM host that reads for others has that much less room; assign without reader passes", () => {
    const picks = planDispatchWithReaders({
      queued: [q("a", "kvm-1", 1), q("b", "kvm-2", 2)],
      active: [
        { id: "x", vmUuid: "vm-x", hostId: "kvm-9", repository: "main", policy: "p", readerHostId: "kvm-1" },
      ],
      onlineHosts: new Set(["kvm-1", "kvm-2"]),
      nowMs: 10,
      assign: () => ({}),
    });
    expect(picks).toEqual([{ id: "b" }]);
  });
});
