import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../../agent/src/config/AgentConfig.js";
import { agentRepositorySettings } from "../../../agent/src/config/agentRepositorySettings.js";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import {
  LocalObjectStore,
  type LocalObjectStoreOptions,
} from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import { breakStaleLocks, listLocks } from "../../../shared/src/repository/locks/RepositoryLock.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";
import {
  defaultChunkWorkers,
  openRepository,
} from "../../../shared/src/repositoryLocation/openRepository.js";
import { whereStored } from "../../support/storedChunks.js";
import { backup } from "../../unit/repository/helpers.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const CS = 64 * KiB;
const CHILD = join(import.meta.dirname, "fixtures", "writerChild.ts");
const vm = { uuid: "u1", name: "vm1" };
const seal = { domainXml: "<domain/>", consistency: { kind: "crash-consistent" as const, reason: "test" } };

const cleanups: Array<() => Promise<unknown>> = [];
const children = new Set<{
  pid?: number | undefined;
  kill(s?: NodeJS.Signals): boolean;
  exitCode: number | null;
}>();
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const f of cleanups.reverse()) await f().catch(() => {});
});

async function tempRepo(chunkSize = CS): Promise<{ dir: string; repo: Repository }> {
  const dir = await mkdtemp(join(tmpdir(), "cairn-fault-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const repo = await Repository.init(new LocalObjectStore(dir), { chunkSize, workers: 1 });
  cleanups.push(() => repo.close());
  return { dir, repo };
}

function spawnWriter(dir: string, size: number, seed: number, parent = "-", delayMs = 0) {
  const p = execa(
    process.execPath,
    ["--import", "tsx", CHILD, dir, String(size), String(seed), parent, String(delayMs)],
    {
      reject: false,
      timeout: 120_000,
      buffer: { stdout: true, stderr: true },
    },
  );
  children.add(p);
  return p;
}

describe("faults on a local repository", () => {
  it("kill -9 of the writer mid-backup: verifies clean, nothing half-sealed, next backup succeeds", async () => {
    const { dir, repo } = await tempRepo();
    const first = await spawnWriter(dir, 2 * MiB, 1);
    expect(first.exitCode, String(first.stderr)).toBe(0);
    const parent = /sealed (\S+)/.exec(String(first.stdout))![1]!;

    const victim = spawnWriter(dir, 8 * MiB, 2, "-", 20);
    await new Promise<void>((resolve) => {
      victim.stdout!.on("data", (b: Buffer) => {
        if (/chunk 20\b/.test(b.toString())) resolve();
      });
    });
    victim.kill("SIGKILL");
    const r = await victim;
    expect(r.signal).toBe("SIGKILL");

    expect((await repo.listSnapshots()).map((m) => m.id)).toEqual([parent]);
    const v = await verifyRepository(repo, { readData: true });
    expect(v.problems).toEqual([]);
    // its shared lock is left behind and is recognisably stale (dead PID on this host)
    const locks = await listLocks(repo.store);
    expect(locks.length).toBe(1);
    expect(locks[0]!.stale).toBe(true);

    const next = await spawnWriter(dir, 2 * MiB, 3, parent);
    expect(next.exitCode, String(next.stderr)).toBe(0);
    expect((await repo.listSnapshots()).length).toBe(2);
    // GC is blocked by the stale lock until it is broken explicitly, then cleans the orphans
    expect(isCairnError(await collectGarbage(repo).catch((e: unknown) => e), "failed-precondition")).toBe(
      true,
    );
    expect((await breakStaleLocks(repo.store)).length).toBe(1);
    const gc = await collectGarbage(repo, { graceMs: -1000 });
    // The killed writer's chunks were staged, never committed: only invisible temporaries remain.
    expect(gc.chunksDeleted + gc.packsDeleted + gc.temporariesDeleted).toBeGreaterThan(0);
    expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
  });

  it("GC leaves lock-record temporaries of live acquirers alone, even with no grace; old leftovers go", async () => {
    const { dir, repo } = await tempRepo();
    // Acquiring is write, then check (format section 8): a writer writes its lock record's temporary
    // while GC holds the exclusive lock. Sweeping it made that writer fail with "not found".
    await mkdir(join(dir, "locks"), { recursive: true });
    await mkdir(join(dir, "chunks", "ab"), { recursive: true });
    const lockTemp = join(dir, "locks", ".shared-0123456789abcdef.tmp-xyz");
    const chunkTemp = join(dir, "chunks", "ab", `.${"ab".repeat(32)}.tmp-xyz`);
    await writeFile(lockTemp, "{}");
    await writeFile(chunkTemp, "partial");
    const gc = await collectGarbage(repo, { graceMs: 0 });
    expect(gc.temporariesDeleted).toBe(1);
    expect(await readdir(join(dir, "locks"))).toContain(".shared-0123456789abcdef.tmp-xyz");
    expect(await readdir(join(dir, "chunks", "ab"))).toEqual([]);
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(lockTemp, old, old);
    expect((await collectGarbage(repo, { graceMs: 0 })).temporariesDeleted).toBe(1);
    expect(await readdir(join(dir, "locks"))).not.toContain(".shared-0123456789abcdef.tmp-xyz");
  });

  it("two writer processes at once, with GC trying to run beside them: nothing corrupt, nothing lost", async () => {
    const { dir, repo } = await tempRepo();
    const a = spawnWriter(dir, 4 * MiB, 10, "-", 5);
    const b = spawnWriter(dir, 4 * MiB, 11, "-", 5);
    let gcRuns = 0;
    let gcRefused = 0;
    let done = false;
    const gcLoop = (async () => {
      while (!done) {
        try {
          await collectGarbage(repo, { graceMs: 0 });
          gcRuns++;
        } catch (e) {
          if (!isCairnError(e, "failed-precondition")) throw e;
          gcRefused++;
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    const [ra, rb] = await Promise.all([a, b]);
    done = true;
    await gcLoop;
    expect(ra.exitCode, String(ra.stderr)).toBe(0);
    expect(rb.exitCode, String(rb.stderr)).toBe(0);
    expect(gcRefused).toBeGreaterThan(0);
    const snaps = await repo.listSnapshots();
    expect(snaps.length).toBe(2);
    const v = await verifyRepository(repo, { readData: true });
    expect(v.problems).toEqual([]);
    expect(gcRuns + gcRefused).toBeGreaterThan(0);
    // a final GC removes nothing that a snapshot needs
    await collectGarbage(repo, { graceMs: 0 });
    expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
  });

  it("a flipped byte in a stored chunk file is found by verify --read-data and by a read", async () => {
    const { dir, repo } = await tempRepo();
    const data = randomBytes(4 * CS);
    const w = await repo.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vdb", virtualSize: data.length, sourceFormat: "raw", kind: "full" });
    await d.write(0, data);
    await d.finish();
    const m = await w.seal(seal);
    const idx = await repo.readIndex(m.disks[0]!.index, "t");
    const id = idx.get(2)!;
    const at = await whereStored(repo, id); // its range of a pack (format §6a)
    const file = join(dir, at.key);
    const bytes = await readFile(file);
    bytes[at.offset + Math.floor(at.length / 2)]! ^= 0x40;
    await writeFile(file, bytes);
    const v = await verifyRepository(repo, { readData: true });
    expect(v.problems).toHaveLength(1);
    expect(v.problems[0]).toMatchObject({
      kind: "corrupt-chunk",
      snapshotId: m.id,
      disk: "vdb",
      offset: 2 * CS,
    });
    const e = await (await repo.openDisk(m.id, "vdb")).read(2 * CS + 5, 10).catch((x: unknown) => x);
    expect(isCairnError(e, "corrupt")).toBe(true);
    expect((e as Error).message).toContain(`snapshot ${m.id} disk vdb offset ${2 * CS}`);
  });

  async function tmpfsRepo(size: string, options: LocalObjectStoreOptions = {}) {
    const mnt = await mkdtemp(join(tmpdir(), "cairn-full-"));
    cleanups.push(() => rm(mnt, { recursive: true, force: true }));
    await execa("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", mnt]);
    cleanups.push(() => execa("umount", [mnt]));
    const dir = join(mnt, "repo");
    await mkdir(dir);
    const repo = await Repository.init(new LocalObjectStore(dir, options), { chunkSize: CS, workers: 1 });
    cleanups.push(() => repo.close());
    return { dir, repo };
  }

  const freeBytes = async (dir: string) => {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  };

  for (const [name, options, message] of [
    ["the reserve refuses chunks first", {}, /no space left for backup data.*kept for lock records/],
    [
      "no reserve: the filesystem's ENOSPC",
      { reserveBytes: 0 },
      /no space left on the repository's filesystem/,
    ],
  ] as const) {
    it(`disk full (tmpfs), ${name}: clear error naming the repository, nothing sealed, space given back, verifies clean`, async () => {
      const { dir, repo } = await tmpfsRepo("6m", options);
      const ok = await backup(repo, randomBytes(8 * CS));
      const before = await freeBytes(dir);
      const err = await backup(repo, randomBytes(16 * MiB)).catch((e: unknown) => e);
      expect(isCairnError(err, "resource-exhausted")).toBe(true);
      expect((err as Error).message).toContain(dir);
      expect((err as Error).message).toMatch(message);
      expect((await repo.listSnapshots()).map((m) => m.id)).toEqual([ok.id]);
      // The abort deleted what it had staged: the space is free again for verify's and GC's locks.
      expect((await execa("find", [dir, "-name", "*.tmp-*"])).stdout).toBe("");
      expect(await freeBytes(dir)).toBe(before);
      expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
      expect(await listLocks(repo.store)).toEqual([]);
    });
  }

  it("staged puts leave the reserve free even when their writer never cleans up (a crash); plain puts may use it", async () => {
    const { dir } = await tmpfsRepo("2m");
    const s = new LocalObjectStore(dir, { reserveBytes: 256 * KiB });
    let refused: unknown;
    for (let i = 0; i < 64 && refused === undefined; i++) {
      await s.put(`chunks/aa/c${i}`, randomBytes(64 * KiB), { staged: true }).catch((e: unknown) => {
        refused = e;
      });
    }
    expect(isCairnError(refused, "resource-exhausted")).toBe(true);
    expect((refused as Error).message).toMatch(/256\.0 KiB kept for lock records and manifests/);
    // No commit, no discard: the temporaries stay, as a killed writer's would. The reserve is intact.
    expect(await freeBytes(dir)).toBeGreaterThanOrEqual(192 * KiB);
    await s.put("locks/exclusive-probe", randomBytes(128 * KiB));
    // Space freed elsewhere is seen again: the store asks the filesystem before refusing.
    await new LocalObjectStore(dir).sweepTemporaries(0);
    await s.put("chunks/aa/after", randomBytes(64 * KiB), { staged: true });
  });

  it("the agent config's localRepositoryReserveBytes is the reserve of the repositories the agent opens", async () => {
    const { dir } = await tmpfsRepo("8m");
    const open = (yaml: string) =>
      openRepository(
        dir,
        agentRepositorySettings(parseAgentConfig(yaml, "agent.yaml"), undefined),
        AbortSignal.timeout(30_000),
      );
    // 6 MiB kept free on an 8 MiB volume: a 3 MiB backup does not fit; with the default it does.
    const strict = await open("localRepositoryReserveBytes: 6291456\nchunkWorkers: 3\n");
    expect(strict.pool.size).toBe(3);
    const err = await backup(strict, randomBytes(3 * MiB)).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/6\.0 MiB kept for lock records and manifests/);
    await strict.close();
    const loose = await open("");
    expect(loose.pool.size).toBe(defaultChunkWorkers());
    await backup(loose, randomBytes(3 * MiB));
    await loose.close();
  });

  it("a repository that backups filled keeps room for prune's and GC's locks, and for a manifest", async () => {
    // Background writebacks every 64 KiB show chunks at once, so a failed backup cannot give them back.
    const { dir, repo } = await tmpfsRepo("8m", { writebackEveryBytes: 64 * KiB });
    const sealed: string[] = [];
    let err: unknown;
    for (let i = 0; i < 20 && err === undefined; i++) {
      await backup(repo, randomBytes(MiB)).then(
        (m) => sealed.push(m.id),
        (e: unknown) => {
          err = e;
        },
      );
    }
    expect(isCairnError(err, "resource-exhausted")).toBe(true);
    expect((err as Error).message).toMatch(/kept for lock records and manifests/);
    expect(sealed.length).toBeGreaterThanOrEqual(4);
    // The refused backup's chunks that a writeback showed are still there, yet the reserve is free.
    expect(await freeBytes(dir)).toBeGreaterThan(100 * KiB);
    // Plain puts may use the reserve: a lock record, a manifest-sized object.
    await repo.store.put("locks/probe", randomBytes(64 * KiB));
    await repo.store.delete("locks/probe");
    const decision = await pruneSnapshots(repo, { keepLast: 1 });
    expect(decision.remove.length).toBe(sealed.length - 1);
    const gc = await collectGarbage(repo, { graceMs: 0 });
    expect(gc.packsDeleted).toBeGreaterThan(0);
    const again = await backup(repo, randomBytes(MiB));
    expect((await repo.listSnapshots()).map((m) => m.id).sort()).toEqual([sealed.at(-1), again.id].sort());
    expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
  });
});
