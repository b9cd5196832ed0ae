import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { BackupRequest } from "../../../../agent/src/backup/BackupRequest.js";
import { runBackup } from "../../../../agent/src/backup/runBackup.js";
import { isCairnError } from "../../../../shared/src/errors/CairnError.js";
import { CONFIG_FILES_KEY } from "../../../../shared/src/repository/manifest/VmConfigFiles.js";
import { type Rig, restored, rig, writeBlock } from "./support/pipelineFakes.js";

const A = "/images/vm-1-a.qcow2";
const B = "/images/vm-1-b.raw";
let r: Rig;
let n = 0;
afterEach(async () => r?.dispose());

const backup = (mode: BackupRequest["mode"], extra: Partial<BackupRequest> = {}) =>
  runBackup(r.deps, r.config, {
    jobId: `job-${++n}`,
    domain: "vm-1",
    mode,
    quiesce: "preferred",
    signal: AbortSignal.timeout(30_000),
    ...extra,
  });

const checkpoints = async () =>
  (await r.hypervisor.listCheckpoints("vm-1", AbortSignal.timeout(5_000))).map((c) => c.name);
const bitmapsOf = (source: string) => [...r.disks.get(source)!.bitmaps.keys()].sort();

/** Nothing of a job is left: no libvirt job or export, no job directory. */
async function expectClean(jobId: string) {
  expect(await r.hypervisor.backupJob("vm-1", AbortSignal.timeout(5_000))).toBeUndefined();
  expect(r.hypervisor.serving).toBe(0);
  expect(r.server.running.size).toBe(0);
  expect(existsSync(join(r.workDir, "jobs", jobId))).toBe(false);
}

describe.each(["running", "shutoff"] as const)("local pipeline, %s domain", (state) => {
  const offline = state === "shutoff";

  it("full, then incremental: each seals the disks' exact content and continues one chain", async () => {
    r = await rig(state);
    await writeBlock(r, A, 0, 0x11);
    await writeBlock(r, A, 5, 0x12);
    await writeBlock(r, B, 2, 0x13);
    const full = await backup("auto");
    expect(full.offline).toBe(offline);
    expect(full.manifest.disks.map((d) => [d.target, d.kind])).toEqual([
      ["vda", "full"],
      ["vdb", "full"],
    ]);
    expect(
      (await restored(r.repository, full.manifest.id, "vda")).equals(await r.disks.get(A)!.content()),
    ).toBe(true);
    expect(
      (await restored(r.repository, full.manifest.id, "vdb")).equals(await r.disks.get(B)!.content()),
    ).toBe(true);
    expect(await checkpoints()).toEqual([full.plan.newCheckpoint]);
    expect(bitmapsOf(A)).toEqual([full.plan.newCheckpoint]);
    await expectClean(`job-${n}`);

    await writeBlock(r, A, 5, 0x21);
    await writeBlock(r, A, 9, 0x22);
    const inc = await backup("auto");
    const vda = inc.manifest.disks.find((d) => d.target === "vda")!;
    expect(vda).toMatchObject({
      kind: "incremental",
      parentSnapshot: full.manifest.id,
      checkpoint: inc.plan.newCheckpoint,
    });
    // Only the two changed blocks are read from the qcow2 disk; the raw one is read in full again.
    expect(vda.stats.bytesRead).toBe(2 * 64 * 1024);
    expect(inc.manifest.disks.find((d) => d.target === "vdb")?.kind).toBe("full");
    expect(
      (await restored(r.repository, inc.manifest.id, "vda")).equals(await r.disks.get(A)!.content()),
    ).toBe(true);
    expect(
      (await restored(r.repository, full.manifest.id, "vda")).equals(await r.disks.get(A)!.content()),
    ).toBe(false);
    await expectClean(`job-${n}`);

    // The manifest's extra stays what each path always wrote.
    expect(Object.keys(inc.manifest.extra).sort()).toEqual(
      offline
        ? [CONFIG_FILES_KEY, "jobId", "mode", "offline"].sort()
        : [CONFIG_FILES_KEY, "freezeWindowMs", "jobId", "mode"].sort(),
    );
    expect(inc.manifest.extra).toMatchObject({
      jobId: `job-${n}`,
      mode: "auto",
      ...(offline ? { offline: true } : {}),
    });
    expect(inc.manifest.jobId).toBe(`job-${n}`);
    expect(inc.manifest.consistency.kind).toBe("quiesced");
    if (offline) expect(r.hypervisor.calls).not.toContain("beginPullBackup");
    else expect(typeof inc.manifest.extra["freezeWindowMs"]).toBe("number");
  });

  it("a failed read rolls everything back: export ended, the new checkpoint and its bitmap gone", async () => {
    r = await rig(state);
    await writeBlock(r, A, 1, 0x31);
    const full = await backup("full");
    const cpsBefore = await checkpoints();
    const bitmapsBefore = bitmapsOf(A);
    await writeBlock(r, A, 3, 0x32);
    r.disks.get(A)!.failReads = true;
    const err = await backup("incremental").catch((e: unknown) => e);
    expect(String(err)).toMatch(/export read failed|NBD|EIO|error/i);
    expect(await checkpoints()).toEqual(cpsBefore);
    expect(bitmapsOf(A)).toEqual(bitmapsBefore);
    await expectClean(`job-${n}`);
    expect(
      (await r.repository.listVmSnapshots("6f1c2b8e-3d47-4a51-9d0e-0000000000aa")).map((s) => s.id),
    ).toEqual([full.manifest.id]);
    // Nothing of the failed attempt is in the next one's way, and the chain still holds.
    r.disks.get(A)!.failReads = false;
    const next = await backup("auto");
    expect(next.manifest.disks.find((d) => d.target === "vda")).toMatchObject({
      kind: "incremental",
      parentSnapshot: full.manifest.id,
    });
    expect(
      (await restored(r.repository, next.manifest.id, "vda")).equals(await r.disks.get(A)!.content()),
    ).toBe(true);
  });

  it("offline validates requested disks as live does; nothing is changed", async () => {
    r = await rig(state);
    const err = await backup("full", { disks: ["vdz"] }).catch((e: unknown) => e);
    expect(isCairnError(err, "invalid-argument"), String(err)).toBe(true);
    expect(String(err)).toMatch(/no backup-capable disk vdz/);
    expect(await checkpoints()).toEqual([]);
    expect(bitmapsOf(A)).toEqual([]);
    await expectClean(`job-${n}`);
  });

  it("a repository a prune holds fails the job before anything is changed", async () => {
    r = await rig(state);
    const { acquireLock } = await import("../../../../shared/src/repository/locks/RepositoryLock.js");
    const prune = await acquireLock(r.repository.store, "exclusive", "prune (test)");
    try {
      const err = await backup("full").catch((e: unknown) => e);
      expect(String(err)).toMatch(/exclusive lock by prune \(test\)/);
    } finally {
      await prune.release();
    }
    expect(r.hypervisor.calls).toEqual([]);
    expect(await checkpoints()).toEqual([]);
    expect(bitmapsOf(A)).toEqual([]);
    await expectClean(`job-${n}`);
  });
});

describe("offline only", () => {
  it("abort while exporting: the exports stop, the bitmaps added go, nothing is left", async () => {
    r = await rig("shutoff");
    await writeBlock(r, A, 0, 0x45);
    await backup("full");
    const before = await checkpoints();
    const bitmapsBefore = bitmapsOf(A);
    await writeBlock(r, A, 1, 0x46);
    const ctl = new AbortController();
    const start = r.server.qemuNbd.bind(r.server);
    r.server.qemuNbd = async (o) => {
      const e = await start(o);
      ctl.abort(new Error("test: cancelled"));
      return e;
    };
    const err = await backup("auto", { signal: ctl.signal }).catch((e: unknown) => e);
    expect(isCairnError(err, "aborted"), String(err)).toBe(true);
    expect(await checkpoints()).toEqual(before);
    expect(bitmapsOf(A)).toEqual(bitmapsBefore);
    await expectClean(`job-${n}`);
  });
});

describe("live only", () => {
  it("abort during backup-begin: begin completes, then the undo stack ends it and deletes the checkpoint", async () => {
    r = await rig("running");
    await writeBlock(r, A, 0, 0x41);
    await backup("full");
    const before = await checkpoints();
    const ctl = new AbortController();
    r.hypervisor.onBegin = () => ctl.abort(new Error("test: cancelled"));
    const err = await backup("auto", { signal: ctl.signal, quiesce: "off" }).catch((e: unknown) => e);
    expect(isCairnError(err, "aborted"), String(err)).toBe(true);
    // The atomic begin made the checkpoint; undo ended the job first, then deleted it.
    const tail = r.hypervisor.calls.slice(-3);
    expect(tail[0]).toBe("beginPullBackup+checkpoint");
    expect(tail[1]).toBe("endBackup");
    expect(tail[2]).toMatch(/^deleteCheckpoint cairn-/);
    expect(await checkpoints()).toEqual(before);
    await expectClean(`job-${n}`);
  });

  it("the checkpoint is made before the freeze; only the export starts while frozen", async () => {
    r = await rig("running");
    await backup("full");
    r.hypervisor.calls.length = 0;
    await backup("auto");
    expect(r.hypervisor.calls.filter((c) => /^(createCheckpoint|beginPullBackup)/.test(c))).toEqual([
      "createCheckpoint",
      "beginPullBackup",
    ]);
  });

  it("a sealed backup keeps its checkpoint and prunes Cairn's others but the chain's root", async () => {
    r = await rig("running");
    await writeBlock(r, A, 0, 0x51);
    const s1 = await backup("full");
    await writeBlock(r, A, 1, 0x52);
    const s2 = await backup("incremental");
    expect(s2.prunedCheckpoints).toEqual([]);
    await writeBlock(r, A, 2, 0x53);
    const s3 = await backup("incremental");
    expect(s3.prunedCheckpoints).toEqual([s2.plan.newCheckpoint]);
    expect(await checkpoints()).toEqual([s1.plan.newCheckpoint, s3.plan.newCheckpoint]);
    expect(s3.checkpoint?.name).toBe(s3.plan.newCheckpoint);
    // A differential reads everything since the root from the root's (merged) bitmap.
    const d = await backup("differential");
    const vda = d.manifest.disks.find((x) => x.target === "vda")!;
    expect(vda).toMatchObject({ kind: "differential", parentSnapshot: s1.manifest.id });
    expect(vda.stats.bytesRead).toBe(2 * 64 * 1024);
    expect((await restored(r.repository, d.manifest.id, "vda")).equals(await r.disks.get(A)!.content())).toBe(
      true,
    );
  });
});
