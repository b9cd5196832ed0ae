import { describe, expect, it } from "vitest";
import { planBackupOutcome } from "../../../../coordinator/src/ledger/planBackupOutcome.js";
import { entry } from "./entries.js";

const outcome = (over: Partial<Parameters<typeof planBackupOutcome>[1]> = {}) => ({
  vmUuid: "u1",
  jobId: "j3",
  hostId: "B",
  repository: "main",
  snapshotId: "s3",
  checkpoint: {
    name: "cairn-3",
    parent: "cairn-2",
    bitmaps: { vda: "cairn-3", vdb: "cairn-3" },
    xml: "<x/>",
  },
  diskKinds: { vda: "incremental", vdb: "full: dirty bitmap cairn-2 of vdb is inconsistent" },
  prunedCheckpoints: ["cairn-2"],
  ...over,
});

describe("planBackupOutcome", () => {
  const root = [entry({ checkpoint: "cairn-1" }), entry({ checkpoint: "cairn-1", target: "vdb" })];
  const mid = [
    entry({ checkpoint: "cairn-2", createdMs: 200, kind: "incremental", state: "suspect", reason: "crash" }),
    entry({ checkpoint: "cairn-2", target: "vdb", createdMs: 200, kind: "incremental", state: "suspect" }),
  ];
  const pending = [
    entry({
      checkpoint: "cairn-3",
      state: "pending",
      xml: "",
      snapshotId: null,
      kind: "",
      jobId: "j3",
      createdMs: 300,
    }),
  ];

  it("commits the new checkpoint per disk (pending or unseen), confirms, demotes with the agent's reason, retires the pruned", () => {
    const writes = planBackupOutcome([...root, ...mid, ...pending], outcome(), 1000);
    const by = Object.fromEntries(writes.map((w) => [`${w.entry.checkpoint}/${w.entry.target}`, w]));
    expect(by["cairn-3/vda"]).toMatchObject({
      from: "pending",
      entry: {
        state: "committed",
        xml: "<x/>",
        snapshotId: "s3",
        kind: "incremental",
        hostId: "B",
        createdMs: 300,
      },
    });
    expect(by["cairn-3/vdb"]).toMatchObject({
      from: null,
      entry: { state: "committed", kind: "full", parent: "cairn-2" },
    });
    // vda read incrementally: its suspect entry was confirmed, then pruned (retired) by the same job.
    expect(by["cairn-2/vda"]).toMatchObject({ from: "suspect", entry: { state: "retired" } });
    expect(by["cairn-2/vda"]?.entry.reason).toMatch(/deleted after job j3/);
    // vdb read in full for a broken bitmap: the whole older chain is broken with that reason, even pruned.
    for (const k of ["cairn-1/vdb", "cairn-2/vdb"]) {
      expect(by[k]?.entry.state).toBe("broken");
      expect(by[k]?.entry.reason).toBe(
        "job j3 read vdb in full: dirty bitmap cairn-2 of vdb is inconsistent",
      );
    }
    expect(by["cairn-1/vda"]).toBeUndefined(); // the root stays committed
    expect(writes.every((w) => w.entry.changedMs === 1000)).toBe(true);
  });

  it("a requested full retires the old chain instead of breaking it", () => {
    const writes = planBackupOutcome(
      root,
      outcome({
        diskKinds: { vda: "full: full backup requested", vdb: "full: full backup requested" },
        prunedCheckpoints: [],
      }),
      1000,
    );
    expect(
      writes.filter((w) => w.entry.checkpoint === "cairn-1").map((w) => [w.entry.state, w.entry.reason]),
    ).toEqual([
      ["retired", "a new chain began with the full backup of job j3"],
      ["retired", "a new chain began with the full backup of job j3"],
    ]);
  });

  it("a checkpoint an earlier run of the same job left pending is rolled back", () => {
    const stale = entry({ checkpoint: "cairn-2x", state: "pending", jobId: "j3", xml: "" });
    const w = planBackupOutcome(
      [...root, stale],
      outcome({ diskKinds: { vda: "incremental" }, prunedCheckpoints: [] }),
      1,
    );
    expect(w.find((x) => x.entry.checkpoint === "cairn-2x")?.entry).toMatchObject({
      state: "retired",
      reason: "rolled back: an earlier run of job j3 made it and did not seal",
    });
  });

  it("a copy (no checkpoint, kind copy) changes nothing", () => {
    expect(
      planBackupOutcome(
        root,
        outcome({ checkpoint: undefined, diskKinds: { vda: "copy" }, prunedCheckpoints: [] }),
        1,
      ),
    ).toEqual([]);
  });

  it("an illegal move is a bug, not something to paper over", () => {
    const broken = [entry({ state: "broken" })];
    expect(() =>
      planBackupOutcome(
        broken,
        outcome({ checkpoint: { name: "cairn-1", parent: "", bitmaps: { vda: "cairn-1" }, xml: "" } }),
        1,
      ),
    ).toThrow(/illegal move broken → committed/);
  });
});
