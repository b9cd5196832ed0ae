import { describe, expect, it } from "vitest";
import { PendingExports } from "../../../../agent/src/transfer/PendingExports.js";

describe("PendingExports", () => {
  it("delivers FinishExport's outcome to the waiting export; unknown jobs are not found", async () => {
    const p = new PendingExports();
    const waiting = p.wait("job-1", {
      signal: AbortSignal.timeout(5_000),
      followed: () => true,
      idleTimeoutMs: 1_000,
    });
    expect(p.finish("job-2", { failed: "x" })).toBe(false);
    expect(p.finish("job-1", { failed: "mover died" })).toBe(true);
    await expect(waiting).resolves.toEqual({ failed: "mover died" });
    expect(p.finish("job-1", { failed: "again" })).toBe(false);
  });

  it("gives the export up once nobody has followed the job for the idle timeout, not while followed", async () => {
    const p = new PendingExports();
    let followed = true;
    const waiting = p.wait("job-1", {
      signal: AbortSignal.timeout(5_000),
      followed: () => followed,
      idleTimeoutMs: 100,
      pollMs: 10,
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(p.finish("job-0", { failed: "" })).toBe(false); // still waiting: followed all along
    followed = false;
    await expect(waiting).rejects.toMatchObject({ code: "timeout" });
    expect(p.finish("job-1", { failed: "late" })).toBe(false);
  });

  it("an abort ends the wait", async () => {
    const p = new PendingExports();
    const c = new AbortController();
    const waiting = p.wait("job-1", { signal: c.signal, followed: () => true, idleTimeoutMs: 1_000 });
    c.abort(new Error("cancelled"));
    await expect(waiting).rejects.toMatchObject({ code: "aborted" });
  });
});
