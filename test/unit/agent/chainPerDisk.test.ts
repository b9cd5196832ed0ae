import { describe, expect, it } from "vitest";
import { bitmapProblem } from "../../../agent/src/chain/bitmapProblem.js";
import { checkpointXmlForDisks } from "../../../agent/src/chain/checkpointXmlForDisks.js";
import { judgeChain } from "../../../agent/src/chain/judgeChain.js";
import { survivingDisks } from "../../../agent/src/chain/survivingDisks.js";
import { parseCheckpointXml } from "../../../agent/src/hypervisor/parseCheckpointXml.js";

const NAME = "cairn-20260101T000000Z-ab12cd";
// As `virsh checkpoint-dumpxml` gives it, with an embedded domain whose metadata holds a decoy
// <disks> of another namespace and whose devices are <disk> elements too.
const XML = `<domaincheckpoint>
  <name>${NAME}</name>
  <parent>
    <name>cairn-20251231T000000Z-000001</name>
  </parent>
  <creationTime>1767225600</creationTime>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='${NAME}'/>
    <disk name="vdb" checkpoint="bitmap" bitmap="${NAME}"></disk>
    <disk name='vdc' checkpoint='bitmap' bitmap='${NAME}'/>
    <disk name='sda' checkpoint='no'/>
  </disks>
  <domain type='kvm'>
    <name>web-1</name>
    <uuid>571bc32e-5034-4b2a-971a-1b278d557f66</uuid>
    <metadata>
      <disks xmlns="urn:example"><disk name='vdb' checkpoint='bitmap' bitmap='decoy'/></disks>
    </metadata>
    <!-- <disks><disk name='vdb' checkpoint='bitmap'/></disks> -->
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/a &gt; b.qcow2' index='2'/>
        <target dev='vdb' bus='virtio'/>
      </disk>
    </devices>
  </domain>
</domaincheckpoint>
`;

describe("checkpointXmlForDisks", () => {
  it("leaves the other disks untracked (checkpoint='no', no bitmap) and the rest of the document as it was", () => {
    const out = checkpointXmlForDisks(XML, ["vda", "vdc"]);
    expect(parseCheckpointXml(out)).toMatchObject({
      name: NAME,
      parent: "cairn-20251231T000000Z-000001",
      creationTime: 1767225600,
      bitmaps: { vda: NAME, vdc: NAME },
    });
    expect(out).toContain(`<disk name="vdb" checkpoint='no'></disk>`);
    expect(out).toContain(`<disk name='vda' checkpoint='bitmap' bitmap='${NAME}'/>`);
    // only that one tag changed: the embedded domain, its metadata and comments are untouched
    expect(out.replace(`<disk name="vdb" checkpoint='no'></disk>`, "")).toBe(
      XML.replace(`<disk name="vdb" checkpoint="bitmap" bitmap="${NAME}"></disk>`, ""),
    );
  });

  it("keeping every bitmap disk changes nothing; one disk only works too", () => {
    expect(checkpointXmlForDisks(XML, ["vda", "vdb", "vdc"])).toBe(XML);
    const one = checkpointXmlForDisks(XML, ["vdb"]);
    expect(parseCheckpointXml(one).bitmaps).toEqual({ vdb: NAME });
    expect(one).toContain("<disk name='vda' checkpoint='no'/>");
    expect(one).toContain("<disk name='vdc' checkpoint='no'/>");
    expect(one).toContain("<disk name='sda' checkpoint='no'/>");
  });

  it("refuses to keep a disk the checkpoint has no bitmap for", () => {
    expect(() => checkpointXmlForDisks(XML, ["sda"])).toThrow(/no bitmap for sda/);
    expect(() => checkpointXmlForDisks(XML, ["vdz"])).toThrow(/no bitmap for vdz/);
  });
});

describe("survivingDisks and bitmapProblem", () => {
  const live = new Map([
    [
      "vda",
      [
        { name: "c1", inconsistent: false, recording: true },
        { name: "c2", inconsistent: false },
      ],
    ],
    ["vdb", [{ name: "c1", inconsistent: true, recording: true }]],
    ["vdc", [{ name: "c1", inconsistent: false, recording: false }]],
  ]);
  it("keeps the disks whose bitmap QEMU has consistent and recording; says missing, inconsistent or not recording for the others", () => {
    const s = survivingDisks({ vda: "c1", vdb: "c1", vdc: "c1", vdd: "c1" }, live);
    expect(s.kept).toEqual(["vda"]);
    expect([...s.dropped.keys()]).toEqual(["vdb", "vdc", "vdd"]);
    expect(s.dropped.get("vdb")).toMatch(/^bitmap c1 of vdb is inconsistent in the running QEMU/);
    expect(s.dropped.get("vdc")).toMatch(/^bitmap c1 of vdc is not recording/);
    expect(s.dropped.get("vdd")).toMatch(/^bitmap c1 of vdd is missing in the running QEMU/);
    // recording unknown (not asked): not held against it
    expect(bitmapProblem("vda", "c2", live)).toBe("");
    expect(survivingDisks({}, live)).toEqual({ kept: [], dropped: new Map() });
  });
});

describe("judgeChain with a checkpoint defined without some disks", () => {
  it("the disks left out are not kept with the reason they were left out, whatever QEMU says now", () => {
    const v = judgeChain({
      checkpoints: [
        { name: "c1", bitmaps: { vda: "c1", vdb: "c1" } },
        { name: "c2", bitmaps: { vda: "c2", vdb: "c2" } },
      ],
      refused: new Map(),
      untracked: new Map([
        ["c1", new Map([["vdb", "bitmap c1 of vdb is missing in the running QEMU: …"]])],
        ["c2", new Map([["vdb", ""]])],
      ]),
      live: new Map([
        [
          "vda",
          [
            { name: "c1", inconsistent: false, recording: true },
            { name: "c2", inconsistent: false, recording: true },
          ],
        ],
        ["vdb", [{ name: "c2", inconsistent: false, recording: true }]],
      ]),
    });
    expect(v.map((x) => [x.checkpoint, x.target, x.kept, x.reason])).toEqual([
      ["c1", "vda", true, ""],
      ["c1", "vdb", false, "bitmap c1 of vdb is missing in the running QEMU: …"],
      ["c2", "vda", true, ""],
      ["c2", "vdb", false, "checkpoint c2 on this host does not track vdb"],
    ]);
  });
});
