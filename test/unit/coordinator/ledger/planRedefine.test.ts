import { describe, expect, it } from "vitest";
import { classifyVmEvent } from "../../../../coordinator/src/ledger/classifyVmEvent.js";
import { planRedefine } from "../../../../coordinator/src/ledger/planRedefine.js";
import { withParent } from "../../../../coordinator/src/ledger/withParent.js";
import { entry } from "./entries.js";

describe("planRedefine", () => {
  it("redefines what the host lacks, oldest first, each re-parented past the pruned checkpoints", () => {
    const p = planRedefine(
      [
        entry({
          checkpoint: "cairn-3",
          createdMs: 300,
          xml: "<domaincheckpoint>\n  <name>cairn-3</name>\n  <parent>\n    <name>cairn-2</name>\n  </parent>\n</domaincheckpoint>",
        }),
        entry({ checkpoint: "cairn-2", createdMs: 200, state: "retired" }),
        entry({ checkpoint: "cairn-1", createdMs: 100 }),
        entry({ checkpoint: "cairn-1", target: "vdb", createdMs: 100 }),
        entry({ checkpoint: "cairn-0", createdMs: 50, state: "broken" }),
      ],
      new Set(),
    );
    expect(p.redefine.map((c) => [c.name, c.parent, c.bitmaps])).toEqual([
      ["cairn-1", "", { vda: "cairn-1", vdb: "cairn-1" }],
      ["cairn-3", "cairn-1", { vda: "cairn-3" }],
    ]);
    expect(p.redefine[1]?.xml).toBe(
      "<domaincheckpoint>\n  <name>cairn-3</name>\n  <parent>\n    <name>cairn-1</name>\n  </parent>\n</domaincheckpoint>",
    );
    expect(p.present).toEqual([]);
  });

  it("checkpoints the host has are checked, not redefined; entries without XML cannot be", () => {
    const p = planRedefine(
      [entry({ checkpoint: "cairn-1" }), entry({ checkpoint: "cairn-2", createdMs: 200, xml: "" })],
      new Set(["cairn-1"]),
    );
    expect(p.present.map((e) => e.checkpoint)).toEqual(["cairn-1"]);
    expect(p.unrecoverable.map((e) => e.checkpoint)).toEqual(["cairn-2"]);
    expect(p.redefine).toEqual([]);
  });
});

describe("withParent", () => {
  it("sets, replaces or removes the parent and escapes the name", () => {
    const xml =
      "<domaincheckpoint>\n  <name>c</name>\n  <parent>\n    <name>old</name>\n  </parent>\n</domaincheckpoint>";
    expect(withParent(xml, null)).toBe("<domaincheckpoint>\n  <name>c</name>\n</domaincheckpoint>");
    expect(withParent(xml, "a<b")).toContain("<parent>\n    <name>a&lt;b</name>\n  </parent>");
    expect(withParent(xml, "new").match(/<parent>/g)).toHaveLength(1);
    // No parent yet: after the checkpoint's own name (not a disk's or the domain's).
    expect(
      withParent(
        "<domaincheckpoint>\n  <name>c</name>\n  <domain><name>vm</name></domain>\n</domaincheckpoint>",
        "p",
      ),
    ).toBe(
      "<domaincheckpoint>\n  <name>c</name>\n  <parent>\n    <name>p</name>\n  </parent>\n  <domain><name>vm</name></domain>\n</domaincheckpoint>",
    );
  });
});

describe("classifyVmEvent", () => {
  it("tells crashes and starts from the rest", () => {
    const c = (kind: string, detail = "", state = "") => classifyVmEvent({ kind, detail, state });
    expect([c("crashed"), c("stopped", "failed"), c("stopped", "crashed")]).toEqual([
      "crash",
      "crash",
      "crash",
    ]);
    expect([c("stopped", "destroyed"), c("stopped", "shutdown"), c("stopped", "migrated")]).toEqual([
      "other",
      "other",
      "other",
    ]);
    expect([c("started", "booted"), c("resumed", "migrated"), c("defined", "", "running")]).toEqual([
      "runs",
      "runs",
      "runs",
    ]);
    // The destination's start of an incoming migration: paused, bitmaps not handed over yet.
    expect(c("started", "migrated", "paused")).toBe("other");
    expect([c("resumed", "unpaused"), c("defined", "", "shutoff"), c("suspended", "migrated")]).toEqual([
      "other",
      "other",
      "other",
    ]);
  });
});
