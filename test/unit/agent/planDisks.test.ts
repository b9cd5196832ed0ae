import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkpointsToPrune, planDisks } from "../../../agent/src/backup/planDisks.js";
import type { CheckpointInfo } from "../../../agent/src/hypervisor/parseCheckpointXml.js";
import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type {
  BackupKind,
  SnapshotManifest,
} from "../../../shared/src/repository/manifest/SnapshotManifest.js";

const cp = (name: string, disks: string[], parent?: string): CheckpointInfo => ({
  name,
  parent,
  creationTime: 0,
  bitmaps: Object.fromEntries(disks.map((d) => [d, name])),
  xml: "",
});

const snap = (
  id: string,
  disks: { target: string; kind: BackupKind; checkpoint: string | null; parent: string | null }[],
) =>
  ({
    formatVersion: 1,
    id,
    vm: { uuid: "u", name: "vm" },
    domainXml: "",
    disks: disks.map((d) => ({
      target: d.target,
      virtualSize: 1,
      sourceFormat: "qcow2",
      chunkSize: 1,
      index: "0".repeat(64),
      checkpoint: d.checkpoint,
      parentSnapshot: d.parent,
      kind: d.kind,
      fullReason: null,
      stats: { bytesRead: 0, bytesNew: 0, bytesStored: 0, chunksNew: 0, chunksTotal: 0 },
    })),
    consistency: { kind: "quiesced" },
    stats: { bytesRead: 0, bytesNew: 0, bytesStored: 0 },
    startedAt: "",
    finishedAt: "",
    labels: {},
    protected: false,
    extra: {},
  }) satisfies SnapshotManifest;

const qcow = (t: string) => ({ target: t, format: "qcow2" });
const base = { checkpointName: "cairn-new", liveBitmaps: undefined };
/** What QEMU would report for these checkpoints, minus the "target/bitmap" names listed as lost. */
const live = (cps: CheckpointInfo[], lost: string[] = [], bad: string[] = []) => {
  const m = new Map<string, { name: string; inconsistent: boolean }[]>();
  for (const c of cps)
    for (const [t, b] of Object.entries(c.bitmaps)) {
      if (lost.includes(`${t}/${b}`)) continue;
      m.set(t, [...(m.get(t) ?? []), { name: b, inconsistent: bad.includes(`${t}/${b}`) }]);
    }
  return m;
};

describe("planDisks", () => {
  const s1 = snap("S1", [
    { target: "vda", kind: "full", checkpoint: "cairn-1", parent: null },
    { target: "vdb", kind: "full", checkpoint: "cairn-1", parent: null },
  ]);
  const s2 = snap("S2", [
    { target: "vda", kind: "incremental", checkpoint: "cairn-2", parent: "S1" },
    { target: "vdb", kind: "incremental", checkpoint: "cairn-2", parent: "S1" },
  ]);
  const cps = [cp("cairn-1", ["vda", "vdb"]), cp("cairn-2", ["vda", "vdb"], "cairn-1")];

  it("first backup of a VM is full everywhere, with the reason", () => {
    const p = planDisks({ ...base, mode: "auto", disks: [qcow("vda")], checkpoints: [], history: [] });
    expect(p.newCheckpoint).toBe("cairn-new");
    expect(p.disks[0]).toMatchObject({
      kind: "full",
      bitmap: true,
      fullReason: "no earlier backup of this VM in the repository",
    });
  });

  it("incremental from the last backup's checkpoint, parent = last snapshot", () => {
    const p = planDisks({
      ...base,
      mode: "incremental",
      disks: [qcow("vda"), qcow("vdb")],
      checkpoints: cps,
      history: [s1, s2],
    });
    expect(p.disks).toEqual([
      {
        target: "vda",
        kind: "incremental",
        incrementalFrom: "cairn-2",
        parentSnapshot: "S2",
        fullReason: null,
        bitmap: true,
      },
      {
        target: "vdb",
        kind: "incremental",
        incrementalFrom: "cairn-2",
        parentSnapshot: "S2",
        fullReason: null,
        bitmap: true,
      },
    ]);
  });

  it("differential reads since the chain's full backup", () => {
    const p = planDisks({
      ...base,
      mode: "differential",
      disks: [qcow("vda")],
      checkpoints: cps,
      history: [s1, s2],
    });
    expect(p.disks[0]).toMatchObject({
      kind: "differential",
      incrementalFrom: "cairn-1",
      parentSnapshot: "S1",
    });
  });

  it("per disk: a new disk, a raw disk and an inconsistent bitmap go full; the rest stays incremental", () => {
    const p = planDisks({
      ...base,
      liveBitmaps: live(cps, [], ["vdb/cairn-2"]),
      mode: "auto",
      disks: [qcow("vda"), qcow("vdb"), qcow("vdc"), { target: "vdd", format: "raw" }],
      checkpoints: cps,
      history: [s1, s2],
    });
    expect(p.disks.map((d) => [d.target, d.kind])).toEqual([
      ["vda", "incremental"],
      ["vdb", "full"],
      ["vdc", "full"],
      ["vdd", "full"],
    ]);
    expect(p.disks[1]?.fullReason).toMatch(/inconsistent/);
    expect(p.disks[2]?.fullReason).toBe("disk added since the last backup");
    expect(p.disks[3]?.fullReason).toMatch(/raw-format disk/);
    expect(p.disks[3]?.bitmap).toBe(false);
  });

  it("a bitmap QEMU never saved (QEMU killed) demotes that disk, naming the bitmap", () => {
    const p = planDisks({
      ...base,
      liveBitmaps: live(cps, ["vda/cairn-2"]),
      mode: "auto",
      disks: [qcow("vda"), qcow("vdb")],
      checkpoints: cps,
      history: [s1, s2],
    });
    expect(p.disks[0]).toMatchObject({ kind: "full" });
    expect(p.disks[0]?.fullReason).toMatch(/dirty bitmap cairn-2 of vda is missing/);
    expect(p.disks[1]).toMatchObject({ kind: "incremental" });
    // A differential from cairn-1 merges cairn-1 and cairn-2: a lost later bitmap breaks it too.
    const d = planDisks({
      ...base,
      liveBitmaps: live(cps, ["vda/cairn-2"]),
      mode: "differential",
      disks: [qcow("vda")],
      checkpoints: cps,
      history: [s1, s2],
    });
    expect(d.disks[0]?.fullReason).toMatch(/cairn-2 of vda is missing/);
  });

  it("a checkpoint gone from the domain (e.g. lost in a migration) demotes to full with the reason", () => {
    const p = planDisks({
      ...base,
      mode: "auto",
      disks: [qcow("vda")],
      checkpoints: [cps[0]!],
      history: [s1, s2],
    });
    expect(p.disks[0]).toMatchObject({
      kind: "full",
      fullReason: "checkpoint cairn-2 of the last backup is gone from the domain",
    });
  });

  it("a disk whose chain the coordinator's ledger ended goes full with the ledger's reason, though its checkpoints are intact", () => {
    const p = planDisks({
      ...base,
      mode: "incremental",
      disks: [qcow("vda"), qcow("vdb")],
      checkpoints: cps,
      history: [s1, s2],
      fullReasons: { vda: "restored in place from S1 (job j-9)" },
    });
    expect(p.disks[0]).toMatchObject({
      kind: "full",
      fullReason: "restored in place from S1 (job j-9)",
      bitmap: true,
    });
    expect(p.disks[1]).toMatchObject({ kind: "incremental", incrementalFrom: "cairn-2" });
  });

  it("copy: full reads, no checkpoint at all", () => {
    const p = planDisks({ ...base, mode: "copy", disks: [qcow("vda")], checkpoints: cps, history: [s1, s2] });
    expect(p.newCheckpoint).toBeNull();
    expect(p.disks[0]).toMatchObject({
      kind: "copy",
      bitmap: false,
      incrementalFrom: null,
      parentSnapshot: null,
    });
  });

  it("property: an incremental plan always names an existing checkpoint with this disk's bitmap, and a parent that has the disk", () => {
    const targets = ["vda", "vdb", "vdc"];
    const arb = fc.record({
      mode: fc.constantFrom<BackupMode>("full", "incremental", "differential", "copy", "auto"),
      cpDisks: fc.array(fc.subarray(targets), { maxLength: 4 }),
      snaps: fc.array(fc.record({ disks: fc.subarray(targets), cpIndex: fc.nat(5), full: fc.boolean() }), {
        maxLength: 4,
      }),
      bad: fc.subarray(targets),
    });
    fc.assert(
      fc.property(arb, ({ mode, cpDisks, snaps, bad }) => {
        const checkpoints = cpDisks.map((ds, i) => cp(`cairn-${i}`, ds));
        const history = snaps.map((s, i) =>
          snap(
            `S${i}`,
            s.disks.map((t) => ({
              target: t,
              kind: s.full || i === 0 ? "full" : "incremental",
              checkpoint: `cairn-${s.cpIndex}`,
              parent: i > 0 ? `S${i - 1}` : null,
            })),
          ),
        );
        const plan = planDisks({
          ...base,
          liveBitmaps: live(
            checkpoints,
            bad.map((t) => `${t}/cairn-0`),
          ),
          mode,
          disks: targets.map(qcow),
          checkpoints,
          history,
        });
        for (const d of plan.disks) {
          if (d.kind === "incremental" || d.kind === "differential") {
            const c = checkpoints.find((x) => x.name === d.incrementalFrom);
            expect(c && d.target in c.bitmaps).toBe(true);
            expect(
              history.find((s) => s.id === d.parentSnapshot)?.disks.some((e) => e.target === d.target),
            ).toBe(true);
            // Every bitmap from the incremental's checkpoint on is present in QEMU.
            const from = checkpoints.findIndex((x) => x.name === d.incrementalFrom);
            if (bad.includes(d.target))
              expect(checkpoints.slice(from).some((x) => x.bitmaps[d.target] === "cairn-0")).toBe(false);
          } else {
            expect(d.incrementalFrom).toBeNull();
            expect(d.parentSnapshot).toBeNull();
            if (mode !== "copy") expect(d.fullReason).toBeTruthy();
          }
        }
      }),
    );
  });
});

describe("checkpointsToPrune", () => {
  it("keeps the chain root and the newest, deletes Cairn's others, never foreign checkpoints", () => {
    const cps = [
      cp("cairn-1", []),
      cp("cairn-2", []),
      cp("operator-manual", []),
      cp("cairn-3", []),
      cp("cairn-4", []),
    ];
    expect(checkpointsToPrune(cps, ["cairn-1", "cairn-4"])).toEqual(["cairn-2", "cairn-3"]);
  });
});
