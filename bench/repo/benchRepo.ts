/**
 * npm run bench:repo — repository throughput against standard tools, interleaved in one run:
 *  write:   NBD export → repository (full backup)   vs  nbdcopy URI - | zstd -1 -T2 -o FILE
 *  rewrite: the same data again (everything dedups)  vs  our own first write
 *  read:    materialize the restore point to a sparse raw file  vs  zstd -d of the peer's file
 * Both sides make their output durable (fsync) before the clock stops: a backup that is not on disk
 * is not a backup. Fixtures live in .cache/bench (git-ignored). The last stdout line is the JSON
 * result; bench/out/repo.json gets it plus the raw timings.
 */
import { open as fsOpen, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { NBD_STATE_ZERO } from "../../shared/src/nbd/constants.js";
import { NbdClient } from "../../shared/src/nbd/NbdClient.js";
import { readExtents } from "../../shared/src/nbd/readExtents.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { restoreDisk } from "../../shared/src/repository/restore/restoreDisk.js";
import { repositoryStats } from "../../shared/src/repository/stats/repositoryStats.js";
import { makeVmLikeFixture } from "./makeFixture.js";

const GiB = 1024 ** 3;
const SIZE = Number(process.env.CAIRN_BENCH_SIZE ?? 2 * GiB);
const ROUNDS = Number(process.env.CAIRN_BENCH_ROUNDS ?? 3);
const root = resolve(".cache/bench");
const fixture = join(root, `repo-fixture-${SIZE}.raw`);
const work = join(root, "repo-work");
const sock = join(work, "nbd.sock");
const uri = `nbd+unix:///bench?socket=${sock}`;

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await fsOpen(path, "r+");
  await fh.sync();
  await fh.close();
}

async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await f();
  return [(performance.now() - t) / 1000, r];
}

async function startQemuNbd() {
  await rm(sock, { force: true });
  const p = execa(
    "qemu-nbd",
    [
      "--read-only",
      "--persistent",
      "--shared=8",
      "--format=raw",
      "--export-name=bench",
      `--socket=${sock}`,
      fixture,
    ],
    { reject: false, stdin: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    // Wrapped: returning the subprocess itself would await its exit (it is a thenable).
    if (await stat(sock).catch(() => undefined)) return { proc: p };
    if (p.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  p.kill("SIGKILL");
  throw new Error("qemu-nbd did not create its socket");
}

/** Full backup from the NBD export into the repository; returns the snapshot id. */
async function backupFromNbd(repo: Repository): Promise<string> {
  const client = await NbdClient.connect({
    target: { path: sock },
    exportName: "bench",
    metaContexts: ["base:allocation"],
    connections: 2,
  });
  try {
    const map = await client.mapExtents("base:allocation");
    const w = await repo.beginSnapshot({ vm: { uuid: "bench", name: "bench" } });
    const d = await w.addDisk({
      target: "vda",
      virtualSize: client.size,
      sourceFormat: "raw",
      kind: "full",
      fullReason: "bench",
    });
    const data: Array<{ offset: number; length: number }> = [];
    for (const e of map) {
      if (e.flags & NBD_STATE_ZERO) await d.writeZeroes(e.offset, e.length);
      else data.push(e);
    }
    // As the agent reads: chunk-aligned pieces into recycled buffers (DiskWriter copies each piece).
    for await (const piece of readExtents(client, data, {
      chunkSize: repo.chunkSize,
      reuseBuffers: true,
    })) {
      await d.write(piece.offset, piece.data);
    }
    await d.finish();
    const m = await w.seal({
      domainXml: "<domain/>",
      consistency: { kind: "crash-consistent", reason: "bench" },
    });
    return m.id;
  } finally {
    await client.close();
  }
}

async function peerWrite(out: string): Promise<void> {
  await execa("nbdcopy", [uri, "-"], { buffer: false }).pipe("zstd", ["-1", "-T2", "-q", "-f", "-o", out]);
  await fsyncFile(out);
}

async function peerRead(input: string, out: string): Promise<void> {
  await execa("zstd", ["-d", "-q", "-f", "--sparse", "-o", out, input]);
  await fsyncFile(out);
}

/** Median (mean of the middle two for an even count): robust against one disturbed round. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  await mkdir(work, { recursive: true });
  log(`fixture ${fixture} (${SIZE} bytes)...`);
  await makeVmLikeFixture(fixture, SIZE);
  log("starting qemu-nbd...");
  const { proc: nbd } = await startQemuNbd();
  const t: Record<string, number[]> = { peerWrite: [], write: [], rewrite: [], peerRead: [], read: [] };
  let storedOverLogical = 0;
  let peerBytes = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const repoDir = join(work, "repo");
      const peerOut = join(work, "peer.zst");
      await rm(repoDir, { recursive: true, force: true });
      await rm(peerOut, { force: true });
      const repo = await Repository.init(new LocalObjectStore(repoDir), {
        ...(process.env.CAIRN_BENCH_CHUNK ? { chunkSize: Number(process.env.CAIRN_BENCH_CHUNK) } : {}),
      });
      try {
        log("peer write (nbdcopy | zstd -1 -T2)...");
        const [pw] = await timed(() => peerWrite(peerOut));
        log("repository write...");
        t.peerWrite!.push(pw);
        const [w, id] = await timed(() => backupFromNbd(repo));
        t.write!.push(w);
        const [rw] = await timed(() => backupFromNbd(repo));
        t.rewrite!.push(rw);
        const peerRaw = join(work, "peer.raw");
        const ourRaw = join(work, "ours.raw");
        const [pr] = await timed(() => peerRead(peerOut, peerRaw));
        t.peerRead!.push(pr);
        await rm(peerRaw, { force: true });
        const [r] = await timed(async () =>
          restoreDisk(await repo.openDisk(id, "vda"), ourRaw, { format: "raw" }),
        );
        t.read!.push(r);
        await rm(ourRaw, { force: true });
        const st = await repositoryStats(repo);
        storedOverLogical = st.storedBytes / SIZE;
        peerBytes = (await stat(peerOut)).size;
        log(
          `round ${round}: peer write ${pw.toFixed(2)} s, write ${w.toFixed(2)} s, rewrite ${rw.toFixed(2)} s, ` +
            `peer read ${pr.toFixed(2)} s, read ${r.toFixed(2)} s, stored/logical ${storedOverLogical.toFixed(3)}`,
        );
      } finally {
        await repo.close();
      }
    }
  } finally {
    nbd.kill("SIGTERM");
    await nbd;
  }
  const result = {
    write_ratio_vs_nbdcopy_zstd: +(median(t.write!) / median(t.peerWrite!)).toFixed(3),
    dedup_rewrite_speedup: +(median(t.write!) / median(t.rewrite!)).toFixed(3),
    read_ratio_vs_zstd_d: +(median(t.read!) / median(t.peerRead!)).toFixed(3),
    stored_over_logical: +storedOverLogical.toFixed(3),
  };
  await mkdir("bench/out", { recursive: true });
  await writeFile(
    "bench/out/repo.json",
    `${JSON.stringify({ ...result, details: { sizeBytes: SIZE, rounds: ROUNDS, seconds: t, peerStoredOverLogical: peerBytes / SIZE } }, null, 2)}\n`,
  );
  await rm(work, { recursive: true, force: true });
  console.log(JSON.stringify(result));
}

await main();
