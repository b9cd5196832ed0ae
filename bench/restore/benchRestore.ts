/**
 * npm run bench:restore — whole-VM restore (docs/restore.md §3) against virtnbdrestore, in one run.
 *
 * One lab VM with a 2 GiB qcow2 disk (40% random data, the rest never written), through a real
 * coordinator and agent daemon:
 *  ours:  a full backup, the guest writes 5% of the disk, an incremental; then the incremental's VM
 *         restored through the coordinator (`RestoreVm`, qcow2, a new domain defined, not started),
 *         timed from the request to the job's end plus a sync of the new files.
 *  peer:  virtnbdbackup refuses to run beside another tool's checkpoints, so once Cairn's chain is
 *         taken its checkpoints are deleted and virtnbdbackup takes its own: full, the same 5%
 *         written again (fresh random bytes at the same offsets), inc. `virtnbdrestore -c -D -N`
 *         restores that chain to qcow2 and defines a new domain, plus the same sync.
 *  Restores are interleaved, the order swapped each round, every output kept until the end.
 * Instant recovery and file-level restore are not built: their fields are null, with a note.
 * Last stdout line: {"vm_restore_ratio_vs_virtnbdrestore":…,"instant_ping_s":null,…}
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { LabAgent } from "../../test/lab/support/LabAgent.js";
import type { LabVm } from "../../test/lab/support/LabVm.js";
import { Lab } from "../../test/lab/support/lab.js";
import { LAB_DOMAIN_PREFIX } from "../../test/lab/support/labPaths.js";
import { prepareLab } from "../../test/lab/support/prepareLab.js";
import { run } from "../../test/lab/support/run.js";
import { eventually, startTestCoordinator, waitForJobEnd } from "../../test/support/coordinatorHarness.js";
import { log } from "../support/simFleet.js";

const MiB = 1024 * 1024;
const DISK_MIB = Number(process.env.CAIRN_BENCH_RESTORE_DISK_MIB ?? 2048);
const REPS = Number(process.env.CAIRN_BENCH_RESTORE_REPS ?? 3);
const DIRTY = Math.floor(DISK_MIB / 20) * MiB;
const DIRTY_AT = 256 * MiB;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;
const seconds = (t0: number) => (performance.now() - t0) / 1000;

/** Whether virtnbdbackup and virtnbdrestore are here; else why not (the peer is then skipped). */
async function peerMissing(): Promise<string | undefined> {
  for (const tool of ["virtnbdbackup", "virtnbdrestore"]) {
    const r = await execa(tool, ["-V"], { reject: false });
    if (r.exitCode !== 0)
      return `${tool} not installed (apt-get install virtnbdbackup): ${r.stderr || r.message}`;
  }
  return undefined;
}

const prepared = await prepareLab();
log(`lab ${prepared.summary}`);
const lab = new Lab(prepared.config);
const uri = lab.host1.uri;
const virsh = (args: string[], allowFailure = false) => run("virsh", ["-c", uri, ...args], { allowFailure });
const c = await startTestCoordinator({ heartbeatIntervalSeconds: 1, lostAfterSeconds: 4 });
// Restored disks must be reachable by libvirt's QEMU user: under the lab's run root, not /tmp.
const work = join(prepared.config.runRoot, `bench-restore-${process.pid}`);
const domains: string[] = [];
const ours: number[] = [];
const peer: number[] = [];
const peerUnavailable = await peerMissing();
let agent: LabAgent | undefined;
let vm: LabVm | undefined;
try {
  await mkdir(work, { recursive: true, mode: 0o711 });
  // A repository with the default chunk size (the test coordinator's "main" uses small chunks).
  const repoDir = join(work, "repo");
  await (await Repository.init(new LocalObjectStore(repoDir))).close();
  await c.admin().registerRepository({ name: "bench", location: repoDir });
  agent = await LabAgent.enroll(c, "lab-host");
  await agent.start();
  await eventually(
    "the agent probed the repository",
    async () => (await c.admin().showRepository({ name: "bench" })).reach.some((r) => r.reachable),
    60_000,
  );
  vm = await lab.createVm({
    label: "bench-rst",
    disks: [{ kind: "blank", format: "qcow2", sizeMiB: DISK_MIB, randomMiB: Math.round(DISK_MIB * 0.4) }],
  });
  await vm.boot();
  const name = vm.name;
  await eventually("the VM in the inventory", async () =>
    (await c.admin().listVms({ hostId: "lab-host" })).vms.some((x) => x.name === name),
  );
  await c.admin().applyPolicy({
    yaml: `name: bench\nselector: {names: [${name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 100}\nrepository: bench\n`,
  });

  // Ours: full, 5% written, incremental, through the coordinator.
  const backup = async (mode: BackupMode) => {
    const t0 = performance.now();
    const j = await waitForJobEnd(
      c,
      (await c.admin().backupNow({ vm: name, policy: "bench", mode })).jobId,
      1_200_000,
    );
    if (j.state !== "succeeded") throw new Error(`backup ${j.id} ${j.state}: ${j.reason}`);
    log(`[bench] cairn ${j.mode} backup: ${seconds(t0).toFixed(1)} s (${JSON.stringify(j.diskKinds)})`);
    return j;
  };
  await backup(BackupMode.BACKUP_MODE_FULL);
  await vm.writeRandom("/dev/vda", DIRTY_AT, DIRTY);
  const incr = await backup(BackupMode.BACKUP_MODE_INCREMENTAL);
  if (incr.diskKinds.vda !== "incremental") throw new Error(`the second backup was ${incr.diskKinds.vda}`);

  // Peer: its own chain on the same VM, after Cairn's checkpoints are gone (leaves first).
  const peerDir = join(work, "virtnbdbackup");
  if (!peerUnavailable) {
    const cps = (await virsh(["checkpoint-list", name, "--name", "--topological"])).stdout.trim().split("\n");
    for (const cp of cps.filter(Boolean).reverse()) await virsh(["checkpoint-delete", name, cp]);
    for (const level of ["full", "inc"]) {
      if (level === "inc") await vm.writeRandom("/dev/vda", DIRTY_AT, DIRTY);
      const t0 = performance.now();
      await run("virtnbdbackup", ["-U", uri, "-d", name, "-l", level, "-o", peerDir, "-n"], {
        timeoutMs: 1_200_000,
      });
      log(`[bench] virtnbdbackup ${level}: ${seconds(t0).toFixed(1)} s`);
    }
  }

  const oursOnce = async (round: number) => {
    const dir = join(work, `ours-${round}`);
    await mkdir(dir, { mode: 0o711 });
    const newName = `${LAB_DOMAIN_PREFIX}bench-ours-${round}-${process.pid}`;
    domains.push(newName);
    const t0 = performance.now();
    const { jobId } = await c.admin().restoreVm({
      snapshotId: incr.snapshotId as string,
      hostId: "",
      newName,
      destinationDir: dir,
      pool: "",
      format: "qcow2",
      start: false,
      inPlace: false,
    });
    const j = await waitForJobEnd(c, jobId, 1_200_000);
    if (j.state !== "succeeded") throw new Error(`restore ${jobId} ${j.state}: ${j.reason}`);
    await execa("sync", ["--file-system", dir]);
    return seconds(t0);
  };
  const peerOnce = async (round: number) => {
    const dir = join(work, `peer-${round}`);
    await mkdir(dir, { mode: 0o711 });
    const newName = `${LAB_DOMAIN_PREFIX}bench-peer-${round}-${process.pid}`;
    domains.push(newName);
    const t0 = performance.now();
    await run(
      "virtnbdrestore",
      [
        "-U",
        uri,
        "-i",
        peerDir,
        "-o",
        dir,
        "-c",
        "-D",
        "-N",
        newName,
        "-n",
        "-L",
        join(work, `peer-${round}.log`),
      ],
      { timeoutMs: 1_200_000 },
    );
    await execa("sync", ["--file-system", dir]);
    return seconds(t0);
  };
  for (let round = 0; round < REPS; round++) {
    const order = peerUnavailable ? ["ours"] : round % 2 === 0 ? ["ours", "peer"] : ["peer", "ours"];
    for (const who of order) {
      const s = who === "ours" ? await oursOnce(round) : await peerOnce(round);
      (who === "ours" ? ours : peer).push(s);
      log(
        `[bench] round ${round} ${who === "ours" ? "cairn RestoreVm" : "virtnbdrestore"} qcow2: ${s.toFixed(2)} s`,
      );
    }
  }
  // Both restored the same amount of data: the images' allocation says so.
  for (const who of peerUnavailable ? ["ours"] : ["ours", "peer"]) {
    const files = (await run("find", [join(work, `${who}-0`), "-name", "*.qcow2"])).stdout.trim().split("\n");
    for (const f of files) {
      const info = JSON.parse((await run("qemu-img", ["info", "--output=json", f])).stdout) as {
        "virtual-size": number;
        "actual-size": number;
      };
      log(
        `[bench] ${who} image ${f}: virtual ${info["virtual-size"] / MiB} MiB, allocated ${(info["actual-size"] / MiB).toFixed(0)} MiB`,
      );
    }
  }
} finally {
  for (const d of domains) await virsh(["undefine", d, "--nvram"], true);
  await agent?.kill();
  await lab.dispose();
  await c.dispose();
  await rm(work, { recursive: true, force: true });
  await prepared.teardown();
}

const notBuilt = "not built: instant recovery and file-level restore are planned (docs/restore.md §5)";
const result = {
  vm_restore_ratio_vs_virtnbdrestore: peerUnavailable ? null : round3(median(ours) / median(peer)),
  ...(peerUnavailable ? { peer_unavailable: peerUnavailable } : {}),
  instant_ping_s: null,
  file_first_listing_s: null,
  file_listing_read_mib: null,
  note: notBuilt,
};
const detail = {
  ...result,
  disk_mib: DISK_MIB,
  data_mib: Math.round(DISK_MIB * 0.4),
  incremental_mib: DIRTY / MiB,
  reps: REPS,
  seconds: { cairn_restore_vm: ours.map(round3), virtnbdrestore: peer.map(round3) },
  targets: {
    vm_restore_ratio_vs_virtnbdrestore: "<= 0.8",
    instant_ping_s: "<= 15",
    file_first_listing_s: "<= 10",
    file_listing_read_mib: "<= 64",
  },
};
await mkdir("bench/out", { recursive: true });
await writeFile("bench/out/restore.json", `${JSON.stringify(detail, null, 2)}\n`);
log(JSON.stringify(detail));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
