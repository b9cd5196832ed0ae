import { describe, expect, it } from "vitest";
import { newJobId } from "../../../../coordinator/src/jobs/newJob.js";

describe("newJobId", () => {
  it("is unique across a 100,000-job batch made in the same second (a policy over a large fleet)", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 100_000; i++) ids.add(newJobId(Date.UTC(2026, 10, 22, 12, 0, 0)));
    expect(ids.size).toBe(100_000);
  });

  it("names its creation time and sorts by it", () => {
    const a = newJobId(Date.UTC(2026, 10, 22, 12, 0, 0));
    const b = newJobId(Date.UTC(2026, 10, 22, 12, 0, 1));
    expect(a).toMatch(/^job-20261122T120000-[0-9a-f]{12}$/);
    expect(a < b).toBe(true);
  });
});
