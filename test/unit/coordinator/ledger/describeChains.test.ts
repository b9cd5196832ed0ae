import { describe, expect, it } from "vitest";
import { describeChains } from "../../../../coordinator/src/ledger/describeChains.js";
import { entry } from "./entries.js";

const vm = {
  disks: [
    { target: "vda", format: "qcow2", virtualSize: 1 },
    { target: "vdb", format: "qcow2", virtualSize: 1 },
    { target: "vdc", format: "raw", virtualSize: 1 },
  ],
};

describe("describeChains", () => {
  it("says per disk, in plain words, what the next backup does and why", () => {
    const entries = [
      entry({ checkpoint: "cairn-1" }),
      entry({ checkpoint: "cairn-2", createdMs: 200, kind: "incremental", state: "retired" }),
      entry({ checkpoint: "cairn-3", createdMs: 300, kind: "incremental", hostId: "kvm-02" }),
      entry({ checkpoint: "cairn-1", target: "vdb" }),
      entry({
        checkpoint: "cairn-3",
        target: "vdb",
        createdMs: 300,
        changedMs: Date.UTC(2026, 11, 7, 14, 2),
        state: "broken",
        reason: "bitmap lost in the crash",
      }),
    ];
    entries[3] = {
      ...entries[3],
      state: "broken",
      reason: "older",
      changedMs: 150,
    } as (typeof entries)[number];
    const d = describeChains(vm, entries);
    expect(d.map((x) => [x.target, x.next, x.length])).toEqual([
      ["vda", "incremental", 3],
      ["vdb", "full", 0],
      ["vdc", "full", 0],
    ]);
    expect(d[0]?.summary).toBe("vda: incremental chain of 3, last checkpoint cairn-3 on kvm-02");
    expect(d[1]?.summary).toBe(
      "vdb: will be read in full: bitmap lost in the crash (at 2026-12-07 14:02:00)",
    );
    expect(d[2]?.summary).toMatch(/^vdc: will be read in full: raw-format disk/);
  });

  it("suspect heads say the next backup checks; a pending entry names its job; a new disk has no checkpoint yet", () => {
    const d = describeChains(
      {
        disks: [
          { target: "vda", format: "qcow2", virtualSize: 1 },
          { target: "vdd", format: "qcow2", virtualSize: 1 },
        ],
      },
      [
        entry({ state: "suspect", reason: "QEMU stopped uncleanly" }),
        entry({ checkpoint: "cairn-9", createdMs: 900, state: "pending", jobId: "j9" }),
      ],
    );
    expect(d[0]).toMatchObject({ next: "check", length: 1 });
    expect(d[0]?.summary).toMatch(
      /suspect since .*: QEMU stopped uncleanly; the next backup checks its bitmap.*; job j9 is making checkpoint cairn-9$/,
    );
    expect(d[1]?.summary).toBe("vdd: will be read in full: no checkpoint recorded for vdd yet");
  });
});
