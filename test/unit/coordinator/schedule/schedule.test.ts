import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chooseJobMode } from "../../../../coordinator/src/schedule/chooseJobMode.js";
import { dueRun } from "../../../../coordinator/src/schedule/dueRun.js";
import { inWindow } from "../../../../coordinator/src/schedule/inWindow.js";
import { nextFireAfter } from "../../../../coordinator/src/schedule/nextFireAfter.js";
import { retryDelayMs } from "../../../../coordinator/src/schedule/retryDelayMs.js";

const d = (s: string) => new Date(s);

describe("dueRun", () => {
  const nightly = { cron: "0 2 * * *", timezone: "UTC" };
  it("nothing before the first fire after creation; the fire once it passed; nothing twice", () => {
    const created = d("2026-11-20T12:00:00Z");
    expect(dueRun(nightly, undefined, created, d("2026-11-21T01:59:59Z"))).toBeUndefined();
    const f = dueRun(nightly, undefined, created, d("2026-11-21T02:00:05Z"));
    expect(f?.toISOString()).toBe("2026-11-21T02:00:00.000Z");
    expect(dueRun(nightly, f, created, d("2026-11-21T09:00:00Z"))).toBeUndefined();
  });

  it("missed fires collapse into the newest one", () => {
    const f = dueRun(
      nightly,
      d("2026-11-01T02:00:00Z"),
      d("2026-10-01T00:00:00Z"),
      d("2026-11-22T08:00:00Z"),
    );
    expect(f?.toISOString()).toBe("2026-11-22T02:00:00.000Z");
  });

  it("a year of missed per-second fires is found quickly", () => {
    const t0 = performance.now();
    const f = dueRun(
      { cron: "* * * * * *", timezone: "UTC" },
      d("2025-11-22T00:00:00Z"),
      d("2025-01-01T00:00:00Z"),
      d("2026-11-22T08:00:00.500Z"),
    );
    expect(f?.toISOString()).toBe("2026-11-22T08:00:00.000Z");
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it("honours the policy's time zone", () => {
    const berlin = { cron: "0 2 * * *", timezone: "Europe/Berlin" };
    expect(nextFireAfter(berlin, d("2026-11-22T00:00:00Z"))?.toISOString()).toBe("2026-11-22T01:00:00.000Z");
  });

  it("equals the naive scan over every fire (property)", () => {
    // Each cron with the longest span its naive scan may walk: the oracle calls croner once per
    // fire (~0.1 ms each), so a 2-day span of a 20-second cron alone would be 8,640 calls a run.
    const day = 86_400_000;
    const cronAndSpan = fc
      .constantFrom<[string, number]>(
        ["*/7 * * * *", 2 * day],
        ["0 */3 * * *", 20 * day],
        ["15 2 * * 1", 60 * day],
        ["*/20 * * * * *", day / 8],
        ["0 0 1 * *", 400 * day],
      )
      .chain(([c, maxSpan]) => fc.tuple(fc.constant(c), fc.integer({ min: 1, max: maxSpan })));
    fc.assert(
      fc.property(cronAndSpan, fc.integer({ min: 0, max: 3 * day }), ([c, span], offset) => {
        const s = { cron: c, timezone: "UTC" };
        const since = new Date(Date.parse("2026-01-01T00:00:00Z") + offset);
        const now = new Date(since.getTime() + span);
        let naive: Date | undefined;
        for (let f = nextFireAfter(s, since); f && f <= now; f = nextFireAfter(s, f)) naive = f;
        expect(dueRun(s, undefined, since, now)?.getTime()).toBe(naive?.getTime());
      }),
      { numRuns: 60 },
    );
  });
});

describe("inWindow", () => {
  it("plain and midnight-wrapping windows, in the policy's zone", () => {
    expect(inWindow(undefined, "UTC", d("2026-11-22T12:00:00Z"))).toBe(true);
    const day = { start: "09:00", end: "17:00" };
    expect(inWindow(day, "UTC", d("2026-11-22T08:59:00Z"))).toBe(false);
    expect(inWindow(day, "UTC", d("2026-11-22T09:00:00Z"))).toBe(true);
    expect(inWindow(day, "UTC", d("2026-11-22T17:00:00Z"))).toBe(false);
    const night = { start: "22:00", end: "06:00" };
    expect(inWindow(night, "UTC", d("2026-11-22T23:30:00Z"))).toBe(true);
    expect(inWindow(night, "UTC", d("2026-11-22T05:59:00Z"))).toBe(true);
    expect(inWindow(night, "UTC", d("2026-11-22T12:00:00Z"))).toBe(false);
    // 21:30 UTC is 22:30 in Berlin (winter).
    expect(inWindow(night, "Europe/Berlin", d("2026-11-22T21:30:00Z"))).toBe(true);
  });
});

describe("chooseJobMode", () => {
  it("over any run sequence, exactly ceil(k/N) of k runs are full with fullEvery N (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 60 }),
        fc.constantFrom("incremental", "differential"),
        (n, k, kind) => {
          let h = { fullCount: 0, runsSinceFull: 0 };
          let fulls = 0;
          for (let i = 0; i < k; i++) {
            const m = chooseJobMode({ kind, fullEvery: n } as never, h);
            if (m === "full") {
              fulls++;
              h = { fullCount: h.fullCount + 1, runsSinceFull: 0 };
            } else {
              expect(m).toBe(kind);
              h = { ...h, runsSinceFull: h.runsSinceFull + 1 };
            }
          }
          expect(fulls).toBe(Math.ceil(k / n));
        },
      ),
    );
  });
  it("fullEvery 0 is one full then incrementals; full policies make copies", () => {
    expect(chooseJobMode({ kind: "incremental", fullEvery: 0 }, { fullCount: 0, runsSinceFull: 0 })).toBe(
      "full",
    );
    expect(chooseJobMode({ kind: "incremental", fullEvery: 0 }, { fullCount: 1, runsSinceFull: 500 })).toBe(
      "incremental",
    );
    expect(chooseJobMode({ kind: "full" }, { fullCount: 3, runsSinceFull: 0 })).toBe("copy");
  });
});

describe("retryDelayMs", () => {
  it("stays within [1, min(max, base·2^(n-1))] (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (attempt, r) => {
          const v = retryDelayMs(attempt, { baseMs: 100, maxMs: 60_000 }, () => r);
          expect(v).toBeGreaterThanOrEqual(1);
          expect(v).toBeLessThanOrEqual(Math.min(60_000, 100 * 2 ** (attempt - 1)));
        },
      ),
    );
  });
});
