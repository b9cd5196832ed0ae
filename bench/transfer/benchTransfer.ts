/**
 * npm run bench:transfer — transfer paths (docs/transfer-paths.md): one VM with a 2 GiB qcow2 disk
 * (40% random, the rest never written) on a host that reaches the repository, backed up through
 * the coordinator LAN-free (the VM host reads and writes) and over the network path (policy
 * `transfer: network`: a mover in its own network namespace reads the VM host's export over TCP
 * with TLS across a veth pair; the mover's route has `quickack`, as §4 asks). A full and a 5%
 * incremental each way, interleaved, each round into a fresh repository with the order swapped in
 * the second, so each path once stores the chunks and once finds them. Then one more network
 * incremental without quickack, reported beside. Peers measured in the same run: the LAN-free path is the reference the network path is
 * compared with. Last stdout line: one JSON object.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import type { LabVm } from "../../test/lab/support/LabVm.js";
import { Lab } from "../../test/lab/support/lab.js";
import { prepareLab } from "../../test/lab/support/prepareLab.js";
import { TransferLab } from "../../test/lab/support/TransferLab.js";
import { eventually } from "../../test/support/coordinatorHarness.js";
import { log } from "../support/simFleet.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const DISK_MIB = Number(process.env.CAIRN_BENCH_TRANSFER_DISK_MIB ?? 2048);
const ROUNDS = Number(process.env.CAIRN_BENCH_TRANSFER_ROUNDS ?? 2);
type Path = "lanfree" | "network";

/** CPU seconds (user + system) of one process and its children that were waited for. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = [11, 12, 13, 14].reduce((a, i) => a + Number(f[i]), 0);
  return ticks / 100;
}

const prepared = await prepareLab();
const L = new TransferLab(new Lab(prepared.config));
const samples: Record<`${Path}_${"full" | "incr"}`, number[]> = {
  lanfree_full: [],
  network_full: [],
  lanfree_incr: [],
  network_incr: [],
};
const moverCpu: { seconds: number; bytes: number }[] = [];
/**
 * CPU seconds per job of the VM's QEMU (on the network path it encrypts the export: GnuTLS), of
 * the VM host's agent and of the mover: with both hosts on this machine's 2 cores, their sum over
 * 2 is the floor of a job's wall time.
 */
const jobCpu: Record<keyof typeof samples, { qemu: number; vmHostAgent: number; mover: number }[]> = {
  lanfree_full: [],
  network_full: [],
  lanfree_incr: [],
  network_incr: [],
};
let vm: LabVm | undefined;
let withoutQuickack = 0;
try {
  await L.start();
  vm = await L.lab.createVm({
    label: "bench-xfer",
    disks: [{ kind: "blank", format: "qcow2", sizeMiB: DISK_MIB, randomMiB: Math.round(DISK_MIB * 0.4) }],
  });
  await vm.boot();
  const v = vm;
  await eventually("the VM in the inventory", async () =>
    (await L.c.admin().listVms({ hostId: "kvm-a" })).vms.some((x) => x.name === v.name),
  );
  // Each round writes into a repository of its own: the path that goes first stores the chunks,
  // the second finds them (dedup), and the order swaps between rounds.
  const roundRepository = async (round: number) => {
    const repo = `san-r${round}`;
    await L.sanRepository(repo);
    await L.policy("lanfree", v.name, "transfer: lan-free\n", repo);
    await L.policy("network", v.name, "transfer: network\n", repo);
  };
  const qemu = await v.qemuPid();
  const once = async (path: Path, mode: BackupMode) => {
    const cpuNow = async () => ({
      qemu: await cpuSeconds(qemu),
      vmHostAgent: await cpuSeconds(L.a.pid as number),
      mover: await cpuSeconds(L.mover.pid as number),
    });
    const before = await cpuNow();
    const t0 = performance.now();
    const job = await L.backup(v.name, path, mode, 1_200_000);
    const ms = performance.now() - t0;
    if (job.state !== "succeeded") throw new Error(`${path} job ${job.id} ${job.state}: ${job.reason}`);
    const expected = path === "network" ? "network" : "lan-free";
    if (job.transfer?.path !== expected) throw new Error(`${path} job took ${job.transfer?.path}`);
    const s = await L.c.running.ctx.store.getSnapshot(job.snapshotId as string);
    const read = (JSON.parse(s?.manifestJson ?? "{}") as { stats: { bytesRead: number } }).stats.bytesRead;
    const after = await cpuNow();
    const used = (k: keyof typeof after) => Math.round((after[k] - before[k]) * 100) / 100;
    jobCpu[`${path}_${mode === BackupMode.BACKUP_MODE_FULL ? "full" : "incr"}`].push({
      qemu: used("qemu"),
      vmHostAgent: used("vmHostAgent"),
      mover: used("mover"),
    });
    if (path === "network") moverCpu.push({ seconds: used("mover"), bytes: read });
    log(
      `[bench] ${path} ${mode === BackupMode.BACKUP_MODE_FULL ? "full" : "incr"}: ${(ms / 1000).toFixed(1)} s, read ${(read / MiB).toFixed(0)} MiB`,
    );
    return ms;
  };
  for (let round = 0; round < ROUNDS; round++) {
    await roundRepository(round);
    const order: Path[] = round % 2 === 0 ? ["lanfree", "network"] : ["network", "lanfree"];
    for (const p of order) samples[`${p}_full`].push(await once(p, BackupMode.BACKUP_MODE_FULL));
    for (const p of order) {
      // 5% of the disk changes before each incremental, at a different place each time.
      const dirty = Math.floor(DISK_MIB / 20) * MiB;
      const off = (((round * 2 + order.indexOf(p)) * 128 + 64) * MiB) % (DISK_MIB * MiB - dirty);
      await v.writeRandom("/dev/vda", off, dirty);
      samples[`${p}_incr`].push(await once(p, BackupMode.BACKUP_MODE_INCREMENTAL));
    }
  }
  // The same network incremental without quickack on the mover's route (§4): what every small
  // reply of QEMU's NBD server costs when the mover's kernel delays its ACKs.
  await L.ns.quickack(false, AbortSignal.timeout(15_000));
  const dirty = Math.floor(DISK_MIB / 20) * MiB;
  await v.writeRandom("/dev/vda", 64 * MiB, dirty);
  withoutQuickack = await once("network", BackupMode.BACKUP_MODE_INCREMENTAL);
} finally {
  await L.dispose();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;
const cpu = moverCpu.reduce((a, x) => a + x.seconds, 0);
const bytes = moverCpu.reduce((a, x) => a + x.bytes, 0);
const result = {
  network_over_lanfree_full: round3(median(samples.network_full) / median(samples.lanfree_full)),
  network_over_lanfree_incr: round3(median(samples.network_incr) / median(samples.lanfree_incr)),
  mover_cpu_s_per_gib: round3(cpu / (bytes / GiB)),
  tls: true,
};
const detail = {
  ...result,
  disk_mib: DISK_MIB,
  rounds: ROUNDS,
  network_incr_without_quickack_s: round3(withoutQuickack / 1000),
  seconds: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map((x) => round3(x / 1000))])),
  mover_cpu: moverCpu,
  cpu_s: jobCpu,
  targets: { network_over_lanfree_full: "<= 1.4", network_over_lanfree_incr: "<= 1.4", tls: true },
};
await mkdir("bench/out", { recursive: true });
await writeFile("bench/out/transfer.json", `${JSON.stringify(detail, null, 2)}\n`);
log(JSON.stringify(detail));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
