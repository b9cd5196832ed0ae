import { describe, expect, it } from "vitest";
import { checkChainIds } from "../../../agent/src/chain/checkChainIds.js";
import { judgeChain } from "../../../agent/src/chain/judgeChain.js";
import { parseDomJobInfo } from "../../../agent/src/hypervisor/parseDomJobInfo.js";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";

describe("judgeChain", () => {
  const cp = (name: string, bitmaps: Record<string, string>) => ({ name, bitmaps });
  it("keeps a disk whose bitmap QEMU has, consistent and recording; says why for every other", () => {
    const v = judgeChain({
      checkpoints: [
        cp("c1", { vda: "c1", vdb: "c1" }),
        cp("c2", { vda: "c2", vdb: "c2", vdc: "c2" }),
        cp("c3", { vda: "c3" }),
      ],
      refused: new Map([["c3", "checkpoint inconsistent: missing or broken bitmap 'c3' for disk 'vda'"]]),
      live: new Map([
        [
          "vda",
          [
            { name: "c1", inconsistent: false, recording: true },
            { name: "c2", inconsistent: false },
          ],
        ],
        [
          "vdb",
          [
            { name: "c1", inconsistent: true, recording: true },
            { name: "c2", inconsistent: false, recording: false },
          ],
        ],
      ]),
    });
    expect(v.map((x) => [x.checkpoint, x.target, x.kept])).toEqual([
      ["c1", "vda", true],
      ["c1", "vdb", false],
      ["c2", "vda", true], // recording unknown (not asked): not held against it
      ["c2", "vdb", false],
      ["c2", "vdc", false],
      ["c3", "vda", false],
    ]);
    expect(v.filter((x) => x.kept).every((x) => x.reason === "")).toBe(true);
    expect(v[1]!.reason).toBe(
      "bitmap c1 of vdb is inconsistent in the running QEMU: QEMU stopped without saving it",
    );
    expect(v[3]!.reason).toBe("bitmap c2 of vdb is not recording: writes since then were not tracked");
    expect(v[4]!.reason).toMatch(
      /^bitmap c2 of vdc is missing in the running QEMU: the image was copied or replaced/,
    );
    expect(v[5]!.reason).toBe(
      "libvirt refused to redefine checkpoint c3: checkpoint inconsistent: missing or broken bitmap 'c3' for disk 'vda'",
    );
  });
});

describe("checkChainIds", () => {
  it("lets uuids and Cairn's checkpoint names through, refuses what could become another argument", () => {
    checkChainIds({
      domainUuid: "571bc32e-5034-4b2a-971a-1b278d557f66",
      checkpoints: ["cairn-20260101T000000Z-ab12cd", "ct-1"],
    });
    for (const bad of [
      { domainUuid: "web-1" },
      { domainUuid: "--all" },
      { domainUuid: "571bc32e-5034-4b2a-971a-1b278d557f66", checkpoints: ["--metadata"] },
      { domainUuid: "571bc32e-5034-4b2a-971a-1b278d557f66", checkpoints: ["../x"] },
      { domainUuid: "571bc32e-5034-4b2a-971a-1b278d557f66", checkpoints: ["a b"] },
      { domainUuid: "571bc32e-5034-4b2a-971a-1b278d557f66", checkpoints: [""] },
    ]) {
      let err: unknown;
      try {
        checkChainIds(bad);
      } catch (e) {
        err = e;
      }
      expect(isCairnError(err, "invalid-argument"), JSON.stringify(bad)).toBe(true);
    }
  });
});

describe("parseDomJobInfo (libvirt 9.0's text, from the lab)", () => {
  it.each([
    ["Job type:         None        \n", ""],
    [
      "Job type:         Unbounded   \nOperation:        Outgoing migration\nTime elapsed:     711          ms\n",
      "migration",
    ],
    ["Job type:         Unbounded   \nOperation:        Incoming migration\n", "migration"],
    ["Job type:         Unbounded   \nOperation:        Backup\n", "backup"],
    ["Job type:         Unbounded   \nOperation:        Snapshot\n", "snapshot"],
  ])("%j → %j", (text, job) => expect(parseDomJobInfo(text)).toBe(job));
});
