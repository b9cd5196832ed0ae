import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { VM_SNAPSHOTS_PREFIX, vmSnapshotKey } from "../../../shared/src/repository/layout.js";
import { jobIdOf, type SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { VmIdentity } from "../../../shared/src/repository/RestorePointWriter.js";
import { CountingObjectStore } from "../../support/CountingObjectStore.js";
import { CS, closesAfterEach, newRepo, sealOpts, vmDisk } from "./helpers.js";

const track = closesAfterEach();
const vmA = { uuid: "aaaaaaaa-0000-0000-0000-000000000001", name: "a" };
const vmB = { uuid: "bbbbbbbb-0000-0000-0000-000000000002", name: "b" };

async function sealFor(r: Repository, who: VmIdentity, jobId?: string): Promise<SnapshotManifest> {
  const w = await r.beginSnapshot({ vm: who });
  const d = await w.addDisk({ target: "vda", virtualSize: 2 * CS, sourceFormat: "raw", kind: "full" });
  await d.write(0, vmDisk(2 * CS));
  await d.finish();
  return w.seal({ ...sealOpts, ...(jobId ? { jobId } : {}) });
}

async function keys(s: MemoryObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of s.list(prefix)) out.push(o.key);
  return out.sort();
}

describe("per-VM snapshot listing (format §7.2)", () => {
  it("reads only the VM's manifests and unmarked ones; ignores markers of missing snapshots", async () => {
    const mem = new MemoryObjectStore();
    const s = new CountingObjectStore(mem);
    const r = await track(newRepo(s));
    const a1 = await sealFor(r, vmA, "job-a1");
    for (let i = 0; i < 3; i++) await sealFor(r, vmB);
    const legacy = await sealFor(r, vmA); // as an older Cairn sealed it: no marker
    await mem.delete(vmSnapshotKey(r.vmKey(vmA.uuid), legacy.id));
    const unmarkedB = await sealFor(r, vmB);
    await mem.delete(vmSnapshotKey(r.vmKey(vmB.uuid), unmarkedB.id));
    await mem.put(vmSnapshotKey(r.vmKey(vmA.uuid), "20200101T000000Z-00000000"), Buffer.from("x"));
    s.reset();
    const mine = await r.listVmSnapshots(vmA.uuid);
    // Ids made in the same second sort by their random part: compare as sets.
    expect(mine.map((m) => m.id).sort()).toEqual([a1.id, legacy.id].sort());
    expect(jobIdOf(mine.find((m) => m.id === a1.id)!)).toBe("job-a1");
    // a1, and the two unmarked ones (which one is whose is only in the manifest).
    expect(s.getsUnder("snapshots/")).toBe(3);
    expect((await r.listVmSnapshots(vmB.uuid)).length).toBe(4);
  });

  it("prune deletes a snapshot's marker with it; GC drops markers whose snapshot is gone", async () => {
    const mem = new MemoryObjectStore();
    const r = await track(newRepo(mem));
    await sealFor(r, vmA);
    const kept = await sealFor(r, vmA);
    expect((await keys(mem, VM_SNAPSHOTS_PREFIX)).length).toBe(2);
    await pruneSnapshots(r, { keepLast: 1 });
    expect(await keys(mem, VM_SNAPSHOTS_PREFIX)).toEqual([vmSnapshotKey(r.vmKey(vmA.uuid), kept.id)]);
    await mem.put(vmSnapshotKey(r.vmKey(vmB.uuid), "20200101T000000Z-00000000"), Buffer.from("x"));
    await collectGarbage(r);
    expect(await keys(mem, VM_SNAPSHOTS_PREFIX)).toEqual([vmSnapshotKey(r.vmKey(vmA.uuid), kept.id)]);
  });

  it("the jobId field is typed; older manifests' extra.jobId still reads", async () => {
    const r = await track(newRepo());
    const typed = await sealFor(r, vmA, "job-1");
    expect(typed.jobId).toBe("job-1");
    expect((await r.showSnapshot(typed.id)).jobId).toBe("job-1");
    const w = await r.beginSnapshot({ vm: vmA });
    const old = await w.seal({ ...sealOpts, extra: { jobId: "job-0" } });
    expect(old.jobId).toBeUndefined();
    expect(jobIdOf(await r.showSnapshot(old.id))).toBe("job-0");
  });

  it("marker keys do not name the VM in an encrypted repository", async () => {
    const mem = new MemoryObjectStore();
    const r = await track(newRepo(mem, "secret"));
    await sealFor(r, vmA);
    const [k] = await keys(mem, VM_SNAPSHOTS_PREFIX);
    expect(k).toMatch(/^vms\/[0-9a-f]{64}\/\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(r.vmKey(vmA.uuid)).not.toBe((await track(newRepo())).vmKey(vmA.uuid));
  });
});
