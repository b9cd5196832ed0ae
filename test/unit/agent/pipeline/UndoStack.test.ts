import { describe, expect, it } from "vitest";
import { UndoStack } from "../../../../agent/src/backup/pipeline/undo/UndoStack.js";
import { createLogger } from "../../../../shared/src/log/createLogger.js";

const log = createLogger("test", "silent");

describe("UndoStack", () => {
  it("runs steps newest first, each with its own live signal, on past a failing one; once", async () => {
    const ran: string[] = [];
    const u = new UndoStack(log);
    const job = new AbortController();
    job.abort();
    u.push("a", async (s) => {
      expect(s.aborted).toBe(false);
      ran.push("a");
    });
    u.push("b", async () => {
      throw new Error("b failed");
    });
    u.push("c", async () => void ran.push("c"), "cleanup");
    expect(u.pending).toEqual(["c", "b", "a"]);
    await u.runAll();
    expect(ran).toEqual(["c", "a"]);
    await u.runAll();
    expect(ran).toEqual(["c", "a"]);
  });

  it("keep() forgets the rollback steps and leaves the cleanup ones", async () => {
    const ran: string[] = [];
    const u = new UndoStack(log);
    u.push("remove dir", async () => void ran.push("dir"), "cleanup");
    u.push("delete checkpoint", async () => void ran.push("checkpoint"));
    u.push("end export", async () => void ran.push("export"), "cleanup");
    u.keep();
    await u.runAll();
    expect(ran).toEqual(["export", "dir"]);
  });
});
