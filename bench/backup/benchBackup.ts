/**
 * npm run bench:backup — Cairn's backup path against nbdcopy on the same lab VM, in one run.
 *
 *  full:  a full backup of a 2 GiB random-data disk into a fresh local repository (ours), against
 *         `nbdcopy` of the same libvirt pull-mode export to a file, synced to disk (peer); interleaved,
 *         median of 5, after one unmeasured warm-up round of each (the agent is a long-running
 *         daemon: warm virsh sessions and JIT, the source image in the host's cache). Both write
 *         to a new journaled ext4 made for the run (bench/support/freshFilesystem.ts).
 *  incr:  the guest writes 5% of the disk in 1 MiB extents; an incremental reads only those.
 *  freeze: the guest's freeze window (freeze → backup-begin → thaw) over every backup of the run.
 * Last stdout line: {"full_ratio_vs_nbdcopy":…,"incr_read_over_dirty":…,"incr_stored_over_full":…,"freeze_ms_median":…}
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import type { FreezePhases } from "../../agent/src/guest/withFrozenGuest.js";
import { pullBackupXml } from "../../agent/src/hypervisor/backupXml.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { PACKS_PREFIX } from "../../shared/src/repository/layout.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { defaultChunkWorkers } from "../../shared/src/repositoryLocation/openRepository.js";
import { agentHarness } from "../../test/lab/support/agentHarness.js";
import { Lab } from "../../test/lab/support/lab.js";
import { REPO_ROOT } from "../../test/lab/support/labPaths.js";
import { prepareLab } from "../../test/lab/support/prepareLab.js";
import { run } from "../../test/lab/support/run.js";
import { freshFilesystem } from "../support/freshFilesystem.js";

const MiB = 1024 * 1024;
const DISK_MIB = 2048;
const REPS = Number(process.env.CAIRN_BENCH_REPS ?? 5);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
async function countObjects(repository: Repository, prefix: string): Promise<number> {
  let n = 0;
  for await (const _ of repository.store.list(prefix)) n++;
  return n;
}
const log = (s: string) => process.stderr.write(`[bench:backup] ${s}\n`);

const prepared = await prepareLab();
log(`lab ${prepared.summary}`);
const lab = new Lab(prepared.config);
const h = await agentHarness(lab.host1, { runRoot: prepared.config.runRoot });
// Repositories and nbdcopy's copies go to a new filesystem of their own (see freshFilesystem).
// Every round's copy and repository stay until the end (see below), ~2.1 GiB each, plus room.
const fs = await freshFilesystem(
  join(REPO_ROOT, ".cache", "bench-fs"),
  ((REPS + 1) * 2.25 * DISK_MIB + 2048) * MiB,
);
const work = fs.mountpoint;
log(`repositories and copies on a fresh ext4 at ${work}`);
try {
  const t = Date.now();
  const vm = await lab.createVm({
    label: "bench",
    disks: [
      { kind: "ext4-data" },
      { kind: "blank", format: "qcow2", sizeMiB: DISK_MIB, randomMiB: DISK_MIB },
    ],
  });
  await vm.boot();
  log(`VM with a ${DISK_MIB} MiB random-data disk ready in ${Date.now() - t} ms`);
  const freezes: number[] = [];
  const phases: FreezePhases[] = [];
  const ours: number[] = [];
  const peer: number[] = [];
  let lastFull: Awaited<ReturnType<typeof runBackup>> | undefined;
  let job = 0;

  for (let rep = 0; rep <= REPS; rep++) {
    const warmup = rep === 0;
    let peerS = 0;
    let oursS = 0;
    // Peer: nbdcopy of the same pull-mode export (no checkpoint) to a file.
    const peerRound = async () => {
      const dir = join(h.dir, `peer-${rep}`);
      await mkdir(join(dir, "nbd"), { recursive: true });
      await run("chown", [`${h.config.qemuUid}:${h.config.qemuGid}`, join(dir, "nbd")]);
      const sock = join(dir, "nbd", "s.sock");
      await h.deps.hypervisor.beginPullBackup(
        vm.name,
        {
          backupXml: pullBackupXml({
            socketPath: sock,
            disks: [
              { target: "vda", backup: false },
              { target: "vdb", backup: true, scratchPath: join(dir, "scratch.qcow2") },
            ],
          }),
        },
        AbortSignal.timeout(60_000),
      );
      try {
        const t0 = performance.now();
        const out = join(work, `peer-${rep}.raw`);
        await execa("nbdcopy", [`nbd+unix:///vdb?socket=${sock}`, out]);
        // Durable before the clock stops, as our backup is (its seal syncs): as in bench:repo.
        await execa("sync", ["--file-system", out]);
        peerS = (performance.now() - t0) / 1000;
        if (!warmup) peer.push(peerS);
      } finally {
        // The copy stays until the end, like our repositories: deleting 2 GiB here (online discard on
        // this host's disk, ext4 freeing its extents) slowed the full backup that follows by up to 2x.
        await h.deps.hypervisor.endBackup(vm.name, AbortSignal.timeout(60_000));
      }
    };

    // Ours: a full backup of the same disk into a fresh repository (no dedup against earlier reps).
    const oursRound = async () => {
      const repoDir = join(work, `repo-${rep}`);
      // As the agent opens repositories: its default chunk workers.
      const repository = await Repository.init(new LocalObjectStore(repoDir), {
        workers: defaultChunkWorkers(),
      });
      try {
        const t0 = performance.now();
        const r = await runBackup({ ...h.deps, repository }, h.config, {
          jobId: `bench-${++job}`,
          domain: vm.name,
          mode: "full",
          quiesce: "required",
          disks: ["vdb"],
          signal: AbortSignal.timeout(600_000),
        });
        oursS = (performance.now() - t0) / 1000;
        if (!warmup) {
          ours.push(oursS);
          if (r.freezeWindowMs) freezes.push(r.freezeWindowMs);
          if (r.freezePhasesMs) phases.push(r.freezePhasesMs);
          lastFull = r;
        }
      } finally {
        // Earlier reps' repositories stay until the end: on a journal-less ext4 (this host's), inode
        // allocation skips every inode freed in the last minutes (ext4 recently_deleted), so deleting
        // 8,192 chunk files right before the next rep made its creates cost 12% of the machine's CPU.
        await repository.close();
      }
    };
    // Who goes first alternates, so neither always follows the other's writeback.
    if (rep % 2 === 0) {
      await peerRound();
      await oursRound();
    } else {
      await oursRound();
      await peerRound();
    }
    log(
      `rep ${rep}${warmup ? " (warm-up, not counted)" : ""}: nbdcopy ${peerS.toFixed(2)} s, cairn full ${oursS.toFixed(2)} s`,
    );
  }

  // Incremental after the guest writes 5% of the disk in 1 MiB extents at distinct offsets.
  const repository = await Repository.open(new LocalObjectStore(join(work, `repo-${REPS}`)), {
    workers: defaultChunkWorkers(),
  });
  try {
    const extents = Math.round(DISK_MIB * 0.05);
    const offsets = new Set<number>();
    while (offsets.size < extents) offsets.add(Math.floor(Math.random() * DISK_MIB));
    await vm.sh(
      'dev=$1; shift; for k in "$@"; do head -c 1048576 /dev/urandom | dd of=$dev bs=1M seek=$k conv=notrunc 2>/dev/null; done; sync',
      ["/dev/vdb", ...offsets],
      600_000,
    );
    const dirty = extents * MiB;
    const packsBefore = await countObjects(repository, PACKS_PREFIX);
    const inc = await runBackup({ ...h.deps, repository }, h.config, {
      jobId: `bench-${++job}`,
      domain: vm.name,
      mode: "incremental",
      quiesce: "required",
      disks: ["vdb"],
      signal: AbortSignal.timeout(600_000),
    });
    if (inc.freezeWindowMs) freezes.push(inc.freezeWindowMs);
    if (inc.freezePhasesMs) phases.push(inc.freezePhasesMs);
    // Packs the incremental wrote: a pack closes at 4 MiB or when the reader pauses (format §6a).
    const incrPacks = (await countObjects(repository, PACKS_PREFIX)) - packsBefore;
    // More small incrementals: the freeze window is what an operator feels on every backup.
    for (let i = 0; i < 6; i++) {
      await vm.writePattern("/dev/vdb", (i + 1) * 64 * MiB, MiB, 0x10 + i);
      const r = await runBackup({ ...h.deps, repository }, h.config, {
        jobId: `bench-${++job}`,
        domain: vm.name,
        mode: "incremental",
        quiesce: "required",
        signal: AbortSignal.timeout(600_000),
      });
      if (r.freezeWindowMs) freezes.push(r.freezeWindowMs);
      if (r.freezePhasesMs) phases.push(r.freezePhasesMs);
    }
    const fullVdb = lastFull!.manifest.disks.find((d) => d.target === "vdb")!;
    const incVdb = inc.manifest.disks.find((d) => d.target === "vdb")!;
    const result = {
      full_ratio_vs_nbdcopy: +(median(ours) / median(peer)).toFixed(3),
      incr_read_over_dirty: +(incVdb.stats.bytesRead / dirty).toFixed(4),
      incr_stored_over_full: +(incVdb.stats.bytesStored / fullVdb.stats.bytesStored).toFixed(4),
      freeze_ms_median: +median(freezes).toFixed(1),
    };
    const detail = {
      ...result,
      warmup_rounds: 1,
      nbdcopy_s: peer,
      cairn_full_s: ours,
      nbdcopy_mib_s: +(DISK_MIB / median(peer)).toFixed(0),
      cairn_full_mib_s: +(DISK_MIB / median(ours)).toFixed(0),
      dirty_bytes: dirty,
      incr_bytes_read: incVdb.stats.bytesRead,
      incr_bytes_stored: incVdb.stats.bytesStored,
      incr_packs: incrPacks,
      full_bytes_stored: fullVdb.stats.bytesStored,
      freeze_ms: freezes.map((f) => +f.toFixed(1)),
      // Median of each part of the window: the freeze call, backup-begin while frozen, the thaw call.
      freeze_phases_ms_median: {
        freeze: +median(phases.map((p) => p.freeze)).toFixed(1),
        hold: +median(phases.map((p) => p.hold)).toFixed(1),
        thaw: +median(phases.map((p) => p.thaw)).toFixed(1),
      },
      targets: {
        full_ratio_vs_nbdcopy: 1.3,
        incr_read_over_dirty: 1.05,
        incr_stored_over_full: 0.1,
        freeze_ms_median: 100,
      },
    };
    log(JSON.stringify(detail));
    await mkdir(join(REPO_ROOT, "bench", "out"), { recursive: true });
    await writeFile(join(REPO_ROOT, "bench", "out", "backup.json"), `${JSON.stringify(detail, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await repository.close();
  }
} finally {
  h.pool.close();
  await h.repository.close();
  await lab.dispose();
  await fs.dispose();
  await rm(h.dir, { recursive: true, force: true });
  await prepared.teardown();
}
