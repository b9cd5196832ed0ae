import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type RetentionCandidate,
  type RetentionPolicy,
  selectForRetention,
} from "../../../shared/src/repository/retention/selectForRetention.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);

const snapshotsArb = fc
  .uniqueArray(
    fc.record({
      id: fc.string({ minLength: 1, maxLength: 8 }),
      ms: fc.integer({ min: 0, max: 3 * 365 * DAY }),
      protected: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
    }),
    { selector: (s) => s.id, maxLength: 60 },
  )
  .map((l) =>
    l.map((s): RetentionCandidate => ({ id: s.id, time: new Date(T0 + s.ms), protected: s.protected })),
  );

const policyArb: fc.Arbitrary<RetentionPolicy> = fc.record(
  {
    keepLast: fc.integer({ min: 0, max: 10 }),
    hourly: fc.integer({ min: 0, max: 10 }),
    daily: fc.integer({ min: 0, max: 10 }),
    weekly: fc.integer({ min: 0, max: 6 }),
    monthly: fc.integer({ min: 0, max: 12 }),
    yearly: fc.integer({ min: 0, max: 3 }),
  },
  { requiredKeys: [] },
);

describe("selectForRetention (properties)", () => {
  it("partitions the input: every snapshot is kept or removed, never both", () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, (snaps, policy) => {
        const d = selectForRetention(snaps, policy);
        const removed = new Set(d.remove);
        for (const s of snaps) expect(d.keep.has(s.id) !== removed.has(s.id)).toBe(true);
        expect(d.keep.size + removed.size).toBe(snaps.length);
      }),
    );
  });

  it("always keeps protected snapshots", () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, (snaps, policy) => {
        const d = selectForRetention(snaps, policy);
        for (const s of snaps) if (s.protected) expect(d.keep.get(s.id)).toContain("protected");
      }),
    );
  });

  it("keeps the newest snapshot whenever any rule is set", () => {
    fc.assert(
      fc.property(snapshotsArb, policyArb, (snaps, policy) => {
        fc.pre(snaps.length > 0 && Object.values(policy).some((n) => (n ?? 0) > 0));
        const newest = [...snaps].sort(
          (a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1),
        )[0]!;
        expect(selectForRetention(snaps, policy).keep.has(newest.id)).toBe(true);
      }),
    );
  });

  it("keeps exactly min(n, count) by keepLast alone, and they are the newest", () => {
    fc.assert(
      fc.property(snapshotsArb, fc.integer({ min: 1, max: 20 }), (snaps, n) => {
        const d = selectForRetention(
          snaps.map((s) => ({ ...s, protected: false })),
          { keepLast: n },
        );
        expect(d.keep.size).toBe(Math.min(n, snaps.length));
        const oldestKept = Math.min(
          ...[...d.keep.keys()].map((id) => snaps.find((s) => s.id === id)!.time.getTime()),
        );
        for (const id of d.remove)
          expect(snaps.find((s) => s.id === id)!.time.getTime()).toBeLessThanOrEqual(oldestKept);
      }),
    );
  });

  it("a daily rule keeps at most one snapshot per UTC day and at most n days", () => {
    fc.assert(
      fc.property(snapshotsArb, fc.integer({ min: 1, max: 10 }), (snaps, n) => {
        const d = selectForRetention(
          snaps.map((s) => ({ ...s, protected: false })),
          { daily: n },
        );
        const days = [...d.keep.keys()].map((id) =>
          snaps
            .find((s) => s.id === id)!
            .time.toISOString()
            .slice(0, 10),
        );
        expect(new Set(days).size).toBe(days.length);
        expect(days.length).toBeLessThanOrEqual(n);
        // every day among the n newest days that has snapshots is represented
        const allDays = [...new Set(snaps.map((s) => s.time.toISOString().slice(0, 10)))].sort().reverse();
        expect(new Set(days)).toEqual(new Set(allDays.slice(0, n)));
      }),
    );
  });

  it("is monotone: raising any count never removes a snapshot that was kept", () => {
    fc.assert(
      fc.property(
        snapshotsArb,
        policyArb,
        fc.constantFrom("keepLast", "hourly", "daily", "weekly", "monthly", "yearly"),
        (snaps, p, k) => {
          // From a policy with no rule (everything kept, the next test) any first rule removes
          // snapshots: monotonicity is a property of policies that already have one.
          fc.pre(Object.values(p).some((n) => (n ?? 0) > 0));
          const key = k as keyof RetentionPolicy;
          const a = selectForRetention(snaps, p);
          const b = selectForRetention(snaps, { ...p, [key]: (p[key] ?? 0) + 1 });
          for (const id of a.keep.keys()) expect(b.keep.has(id)).toBe(true);
        },
      ),
    );
  });

  it("keeps everything when no rule is set", () => {
    fc.assert(
      fc.property(snapshotsArb, (snaps) => {
        expect(selectForRetention(snaps, {}).remove).toEqual([]);
      }),
    );
  });
});

describe("selectForRetention (examples)", () => {
  it("weekly buckets start on Monday across a year boundary", () => {
    const at = (iso: string, id: string) => ({ id, time: new Date(iso) });
    // 2025-12-29 is a Monday; 2026-01-04 is the Sunday of the same ISO week.
    const d = selectForRetention(
      [
        at("2025-12-29T10:00:00Z", "mon"),
        at("2026-01-04T10:00:00Z", "sun"),
        at("2025-12-28T10:00:00Z", "prev-sun"),
      ],
      {
        weekly: 2,
      },
    );
    expect([...d.keep.keys()].sort()).toEqual(["prev-sun", "sun"]);
    expect(d.remove).toEqual(["mon"]);
  });
});
