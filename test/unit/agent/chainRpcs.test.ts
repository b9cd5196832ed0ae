import { describe, expect, it } from "vitest";
import { checkpointXml } from "../../../agent/src/hypervisor/backupXml.js";
import { chainRpcs } from "../../../agent/src/server/chainRpcs.js";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { DomainState } from "../../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";

const ctx = () => ({ signal: new AbortController().signal }) as never;
const log = createLogger("test", "silent");
const qcow = { ...sampleDomain, disks: sampleDomain.disks.map((d) => ({ ...d, format: "qcow2" })) };

/** Host A made c1 and c2 (both disks); their XML is what the ledger keeps. */
async function recordsFromHostA() {
  const a = new FakeHypervisor([structuredClone(qcow)]);
  const s = new AbortController().signal;
  for (const n of ["cairn-c1", "cairn-c2"])
    await a.createCheckpoint(
      qcow.name,
      checkpointXml({
        name: n,
        disks: [
          { target: "vda", bitmap: true },
          { target: "vdb", bitmap: true },
        ],
      }),
      s,
    );
  const rpc = chainRpcs({ hypervisor: a, log });
  return (await rpc.describeChain({ domainUuid: qcow.uuid }, ctx())).checkpoints;
}

describe("chain RPCs over the fake hypervisor", () => {
  it("DescribeChain: checkpoints oldest first with their XML, QEMU's bitmaps, the job holding the domain", async () => {
    const records = await recordsFromHostA();
    expect(records.map((c) => [c.name, c.parent, c.bitmaps])).toEqual([
      ["cairn-c1", "", { vda: "cairn-c1", vdb: "cairn-c1" }],
      ["cairn-c2", "cairn-c1", { vda: "cairn-c2", vdb: "cairn-c2" }],
    ]);
    expect(records[1]!.xml).toContain("<parent><name>cairn-c1</name></parent>");
    const hv = new FakeHypervisor([structuredClone(qcow)]);
    hv.jobs.set(qcow.name, "migration");
    const rpc = chainRpcs({ hypervisor: hv, log });
    const d = await rpc.describeChain({ domainUuid: qcow.uuid }, ctx());
    expect(d).toMatchObject({
      found: true,
      domainName: "web-1",
      state: DomainState.DOMAIN_STATE_RUNNING,
      persistent: true,
      checkpoints: [],
      bitmaps: [],
      activeJob: "migration",
    });
    expect(
      (await rpc.describeChain({ domainUuid: "00000000-0000-4000-8000-000000000000" }, ctx())).found,
    ).toBe(false);
  });

  it("RedefineCheckpoints: validated, oldest first, one verdict per checkpoint and disk; a disk whose bitmap is lost does not take the others with it", async () => {
    const records = await recordsFromHostA();
    const b = new FakeHypervisor([structuredClone(qcow)]);
    const validated: boolean[] = [];
    const redefine = b.redefineCheckpoint.bind(b);
    b.redefineCheckpoint = (d, x, o, s) => {
      validated.push(o.validate);
      return redefine(d, x, o, s);
    };
    // What the migration carried: both bitmaps of vda, only c2's of vdb (c1's never saved).
    b.addBitmap(qcow.name, "vda", "cairn-c1");
    b.addBitmap(qcow.name, "vda", "cairn-c2");
    b.addBitmap(qcow.name, "vdb", "cairn-c2");
    const rpc = chainRpcs({ hypervisor: b, log });
    const r = await rpc.redefineCheckpoints({ domainUuid: qcow.uuid, checkpoints: records }, ctx());
    expect(r.redefined).toEqual(["cairn-c1", "cairn-c2"]);
    expect(r.alreadyPresent).toEqual([]);
    expect(r.verdicts.map((v) => [v.checkpoint, v.target, v.kept])).toEqual([
      ["cairn-c1", "vda", true],
      ["cairn-c1", "vdb", false],
      ["cairn-c2", "vda", true],
      ["cairn-c2", "vdb", true],
    ]);
    expect(r.verdicts[1]!.reason).toMatch(/^bitmap cairn-c1 of vdb is missing in the running QEMU/);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(0);
    // Refused whole, then taken back for vda alone; never without validation.
    expect(validated).toEqual([true, true, true]);
    const s = new AbortController().signal;
    expect((await b.listCheckpoints(qcow.name, s)).map((c) => [c.name, c.parent, c.bitmaps])).toEqual([
      ["cairn-c1", undefined, { vda: "cairn-c1" }],
      ["cairn-c2", "cairn-c1", { vda: "cairn-c2", vdb: "cairn-c2" }],
    ]);
    // Asked again: libvirt's record decides (c1 does not track vdb here).
    const again = await rpc.redefineCheckpoints({ domainUuid: qcow.uuid, checkpoints: records }, ctx());
    expect(again.alreadyPresent).toEqual(["cairn-c1", "cairn-c2"]);
    expect(again.verdicts.map((v) => [v.checkpoint, v.target, v.kept, v.reason])).toEqual([
      ["cairn-c1", "vda", true, ""],
      ["cairn-c1", "vdb", false, "checkpoint cairn-c1 on this host does not track vdb"],
      ["cairn-c2", "vda", true, ""],
      ["cairn-c2", "vdb", true, ""],
    ]);
  });

  it("RedefineCheckpoints: a checkpoint none of whose disks survived stays refused in libvirt's words; the child is judged on its own disks", async () => {
    const records = await recordsFromHostA();
    const b = new FakeHypervisor([structuredClone(qcow)]);
    b.addBitmap(qcow.name, "vda", "cairn-c1");
    b.addBitmap(qcow.name, "vdb", "cairn-c1");
    b.addBitmap(qcow.name, "vda", "cairn-c2");
    b.addBitmap(qcow.name, "vdb", "cairn-c2");
    b.inconsistent.add(`${qcow.name}/vda/cairn-c1`);
    b.disabled.add(`${qcow.name}/vdb/cairn-c1`);
    b.disabled.add(`${qcow.name}/vdb/cairn-c2`);
    const rpc = chainRpcs({ hypervisor: b, log });
    const r = await rpc.redefineCheckpoints({ domainUuid: qcow.uuid, checkpoints: records }, ctx());
    expect(r.redefined).toEqual(["cairn-c2"]);
    expect(r.verdicts.map((v) => [v.checkpoint, v.target, v.kept])).toEqual([
      ["cairn-c1", "vda", false],
      ["cairn-c1", "vdb", false],
      ["cairn-c2", "vda", true],
      ["cairn-c2", "vdb", false],
    ]);
    for (const v of r.verdicts.slice(0, 2))
      expect(v.reason).toMatch(
        /^libvirt refused to redefine checkpoint cairn-c1: .*missing or broken bitmap 'cairn-c1' for disk 'vda'/,
      );
    expect(r.verdicts[3]!.reason).toMatch(/^bitmap cairn-c2 of vdb is not recording/);
    const s = new AbortController().signal;
    expect((await b.listCheckpoints(qcow.name, s)).map((c) => [c.name, c.bitmaps])).toEqual([
      ["cairn-c2", { vda: "cairn-c2" }],
    ]);
  });

  it("RedefineCheckpoints refuses bad ids, an XML naming another checkpoint or domain, before libvirt sees anything", async () => {
    const records = await recordsFromHostA();
    const b = new FakeHypervisor([structuredClone(qcow)]);
    const rpc = chainRpcs({ hypervisor: b, log });
    const cases = [
      { domainUuid: "web-1", checkpoints: records },
      { domainUuid: qcow.uuid, checkpoints: [{ ...records[0]!, name: "--metadata" }] },
      { domainUuid: qcow.uuid, checkpoints: [{ ...records[0]!, name: "cairn-other" }] },
      {
        domainUuid: qcow.uuid,
        checkpoints: [
          {
            ...records[0]!,
            xml: "<domaincheckpoint><name>cairn-c1</name><domain><uuid>11111111-1111-4111-8111-111111111111</uuid></domain></domaincheckpoint>",
          },
        ],
      },
    ];
    for (const c of cases) {
      const err = await rpc.redefineCheckpoints(c, ctx()).catch((e: unknown) => e);
      expect(isCairnError(err, "invalid-argument"), String(err)).toBe(true);
    }
  });

  it("ForgetCheckpoints: metadata only on a stale shut-off definition; refused where the domain runs or is absent", async () => {
    const a = new FakeHypervisor([structuredClone(qcow)]);
    const s = new AbortController().signal;
    for (const n of ["cairn-c1", "cairn-c2", "other-1"])
      await a.createCheckpoint(
        qcow.name,
        checkpointXml({ name: n, disks: [{ target: "vda", bitmap: true }] }),
        s,
      );
    const rpc = chainRpcs({ hypervisor: a, log });
    const running = await rpc.forgetCheckpoints({ domainUuid: qcow.uuid, names: [] }, ctx());
    expect(running.removed).toEqual([]);
    expect(running.refused).toMatch(/is running on this host/);
    a.domains[0]!.state = "shutoff";
    const r = await rpc.forgetCheckpoints({ domainUuid: qcow.uuid, names: [] }, ctx());
    expect(r).toEqual({ removed: ["cairn-c2", "cairn-c1"], refused: "" });
    expect((await a.listCheckpoints(qcow.name, s)).map((c) => c.name)).toEqual(["other-1"]);
    a.domains[0]!.state = "running";
    // the bitmaps stayed
    expect((await a.liveBitmaps(qcow.name, s)).get("vda")?.map((b) => b.name)).toEqual([
      "cairn-c1",
      "cairn-c2",
      "other-1",
    ]);
    const absent = await rpc.forgetCheckpoints(
      { domainUuid: "00000000-0000-4000-8000-000000000000", names: [] },
      ctx(),
    );
    expect(absent.refused).toMatch(/no domain/);
  });
});
