import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupDeps, BackupRequest } from "../../agent/src/backup/BackupRequest.js";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import type { GuestAgent } from "../../agent/src/guest/GuestAgent.js";
import type { Hypervisor } from "../../agent/src/hypervisor/Hypervisor.js";
import { acquireLock } from "../../shared/src/repository/locks/RepositoryLock.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run } from "./support/run.js";

const MiB = 1024 * 1024;
const lab = new Lab();
let vm: LabVm;
let h: Awaited<ReturnType<typeof agentHarness>>;
let jobN = 0;

const backup = (mode: BackupRequest["mode"], extra: Partial<BackupRequest> = {}) =>
  runBackup(h.deps, h.config, {
    jobId: `job-${++jobN}`,
    domain: vm.name,
    mode,
    quiesce: "required",
    signal: AbortSignal.timeout(240_000),
    ...extra,
  });

beforeAll(async () => {
  vm = await lab.createVm({
    label: "live",
    disks: [
      { kind: "ext4-data" },
      { kind: "blank", format: "qcow2", sizeMiB: 96 },
      { kind: "blank", format: "raw", sizeMiB: 16 },
    ],
  });
  await vm.boot();
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
});
afterAll(async () => {
  await lab.dispose();
  await h?.dispose();
});

describe("live backup of a running VM (real libvirt pull backup, real qemu-ga, our NBD client)", () => {
  it("full, three incrementals and a differential: every restore point is byte-identical to the guest disk", async () => {
    await vm.writePattern("/dev/vdb", 4 * MiB, MiB, 0x11);
    await vm.writeRandom("/dev/vdb", 40 * MiB, 2 * MiB);
    await vm.writePattern("/dev/vdc", 0, MiB, 0x22);
    await vm.writeFile("/data/v1.txt", "version one\n");

    const full = await backup("auto");
    expect(full.manifest.consistency.kind).toBe("quiesced");
    expect(full.freezeWindowMs).toBeGreaterThan(0);
    expect(full.manifest.disks.map((d) => [d.target, d.kind])).toEqual([
      ["vda", "full"],
      ["vdb", "full"],
      ["vdc", "full"],
    ]);
    expect(full.manifest.disks.find((d) => d.target === "vdc")?.fullReason).toMatch(/raw-format disk/);
    // A full backup reads only allocated data, not the whole 96 MiB of vdb.
    expect(full.manifest.disks.find((d) => d.target === "vdb")?.stats.bytesRead).toBeLessThan(8 * MiB);
    const fullHashes = { vdb: await vm.deviceHash("/dev/vdb"), vdc: await vm.deviceHash("/dev/vdc") };
    expect(await h.restoredHash(full.manifest.id, "vdb")).toBe(fullHashes.vdb);
    expect(await h.restoredHash(full.manifest.id, "vdc")).toBe(fullHashes.vdc);

    const points: { id: string; vdb: string; vdc: string }[] = [{ id: full.manifest.id, ...fullHashes }];
    for (let i = 1; i <= 3; i++) {
      await vm.writePattern("/dev/vdb", (10 + i * 8) * MiB, MiB, 0x30 + i); // 1 MiB, aligned to 64 KiB bitmap granules
      await vm.writePattern("/dev/vdc", i * MiB, 64 * 1024, 0x40 + i);
      const inc = await backup("incremental");
      const vdb = inc.manifest.disks.find((d) => d.target === "vdb")!;
      expect(vdb.kind).toBe("incremental");
      expect(vdb.parentSnapshot).toBe(points.at(-1)!.id);
      // Only the dirty megabyte of vdb is read from NBD.
      expect(vdb.stats.bytesRead).toBe(MiB);
      points.push({
        id: inc.manifest.id,
        vdb: await vm.deviceHash("/dev/vdb"),
        vdc: await vm.deviceHash("/dev/vdc"),
      });
    }
    await vm.writePattern("/dev/vdb", 80 * MiB, 512 * 1024, 0x55);
    await vm.writeFile("/data/v2.txt", "version two\n");
    const diff = await backup("differential");
    const dvdb = diff.manifest.disks.find((d) => d.target === "vdb")!;
    expect(dvdb.kind).toBe("differential");
    expect(dvdb.parentSnapshot).toBe(full.manifest.id);
    // Everything written since the full: 3 × 1 MiB + 512 KiB.
    expect(dvdb.stats.bytesRead).toBe(3 * MiB + 512 * 1024);
    points.push({
      id: diff.manifest.id,
      vdb: await vm.deviceHash("/dev/vdb"),
      vdc: await vm.deviceHash("/dev/vdc"),
    });

    // Every restore point is logically full and equals the guest at its time.
    for (const p of points) {
      expect(await h.restoredHash(p.id, "vdb"), `vdb of ${p.id}`).toBe(p.vdb);
      expect(await h.restoredHash(p.id, "vdc"), `vdc of ${p.id}`).toBe(p.vdc);
    }
    // The ext4 disk: files written before each backup are in its restore point.
    const vdaPath = await h.materialize(diff.manifest.id, "vda");
    const cat = async (f: string) => (await run("debugfs", ["-R", `cat /${f}`, vdaPath])).stdout;
    expect(await cat("v1.txt")).toBe("version one"); // run() strips the final newline
    expect(await cat("v2.txt")).toBe("version two");

    // Checkpoints stay bounded: the chain's root and the newest.
    const cps = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
    expect(cps.map((c) => c.name)).toEqual([full.plan.newCheckpoint, diff.plan.newCheckpoint]);
    expect(await vm.fsfreezeStatus()).toBe("thawed");
  });

  it("quiesced: the checkpoint is made before the freeze, only the export starts while frozen", async () => {
    const calls: string[] = [];
    const deps = recording(h.deps, calls);
    const incremental = (d: BackupDeps, quiesce: "required" | "off") =>
      runBackup(d, h.config, {
        jobId: `job-${++jobN}`,
        domain: vm.name,
        mode: "incremental",
        quiesce,
        disks: ["vdb"],
        signal: AbortSignal.timeout(240_000),
      });
    const quiesced = await incremental(deps, "required");
    expect(quiesced.manifest.consistency.kind).toBe("quiesced");
    const window = calls.filter((c) => /^(createCheckpoint|freeze|beginPullBackup|thaw)/.test(c));
    expect(window).toEqual(["createCheckpoint", "freeze", "beginPullBackup", "thaw"]);

    // Not frozen: one atomic backup-begin that makes the checkpoint itself.
    calls.length = 0;
    await incremental(deps, "off");
    expect(calls.filter((c) => /^(createCheckpoint|freeze|beginPullBackup)/.test(c))).toEqual([
      "beginPullBackup+checkpoint",
    ]);

    // A freeze that fails after the checkpoint was made: the checkpoint is removed again.
    const before = (await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000))).map(
      (c) => c.name,
    );
    const failing: BackupDeps = {
      ...deps,
      guestAgent: {
        ...bind(h.deps.guestAgent),
        freeze: async () => {
          throw new Error("lab: fsfreeze refused");
        },
      },
    };
    const err = await incremental(failing, "required").catch((e: unknown) => e);
    expect(String(err)).toMatch(/fsfreeze refused/);
    const after = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
    expect(after.map((c) => c.name)).toEqual(before);
    expect(await h.deps.hypervisor.backupJob(vm.name, AbortSignal.timeout(30_000))).toBeUndefined();
    expect(await vm.fsfreezeStatus()).toBe("thawed");
  });

  it("a repository held by a prune fails the job before any checkpoint, freeze or export", async () => {
    const before = (await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000))).map(
      (c) => c.name,
    );
    const prune = await acquireLock(h.repository.store, "exclusive", "prune (lab)");
    const calls: string[] = [];
    try {
      const err = await runBackup(recording(h.deps, calls), h.config, {
        jobId: `job-${++jobN}`,
        domain: vm.name,
        mode: "incremental",
        quiesce: "required",
        signal: AbortSignal.timeout(240_000),
      }).catch((e: unknown) => e);
      expect(String(err)).toMatch(/is locked: exclusive lock by prune \(lab\)/);
    } finally {
      await prune.release();
    }
    expect(calls).toEqual([]);
    const after = await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000));
    expect(after.map((c) => c.name)).toEqual(before);
    expect(await h.deps.hypervisor.backupJob(vm.name, AbortSignal.timeout(30_000))).toBeUndefined();
    expect(await readdir(join(h.config.workDir, "jobs"))).toEqual([]);
    // Nothing of the refused job is in the way of the next one.
    expect((await backup("incremental")).manifest.consistency.kind).toBe("quiesced");
  });
});

/** An object's methods bound to it, so they survive spreading into a wrapper. */
function bind<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  let proto: object | null = o;
  while (proto && proto !== Object.prototype) {
    for (const k of Object.getOwnPropertyNames(proto)) {
      const v = (o as Record<string, unknown>)[k];
      if (k !== "constructor" && typeof v === "function" && !(k in out)) out[k] = v.bind(o);
    }
    proto = Object.getPrototypeOf(proto);
  }
  return out as T;
}

/** Deps whose hypervisor and guest agent log each call's name into `calls`, in order. */
function recording(deps: BackupDeps, calls: string[]): BackupDeps {
  const hv = bind(deps.hypervisor);
  const ga = bind(deps.guestAgent);
  const hypervisor: Hypervisor = {
    ...hv,
    createCheckpoint: async (...a) => {
      calls.push("createCheckpoint");
      return hv.createCheckpoint(...a);
    },
    beginPullBackup: async (domain, docs, signal) => {
      calls.push(docs.checkpointXml ? "beginPullBackup+checkpoint" : "beginPullBackup");
      return hv.beginPullBackup(domain, docs, signal);
    },
  };
  const guestAgent: GuestAgent = {
    ...ga,
    freeze: async (...a) => {
      calls.push("freeze");
      return ga.freeze(...a);
    },
    thaw: async (...a) => {
      calls.push("thaw");
      return ga.thaw(...a);
    },
  };
  return { ...deps, hypervisor, guestAgent };
}
