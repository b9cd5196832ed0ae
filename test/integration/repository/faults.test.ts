import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { collectGarbage } from "../../../shared/src/repository/gc/collectGarbage.js";
import { breakStaleLocks, listLocks } from "../../../shared/src/repository/locks/RepositoryLock.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { verifyRepository } from "../../../shared/src/repository/verify/verifyRepository.js";

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
    expect(gc.chunksDeleted + gc.temporariesDeleted).toBeGreaterThan(0);
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
    const file = join(dir, "chunks", id.slice(0, 2), id);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
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

  it("disk full (tmpfs): clear error naming the repository, nothing sealed, still verifies clean", async () => {
    const mnt = await mkdtemp(join(tmpdir(), "cairn-full-"));
    cleanups.push(() => rm(mnt, { recursive: true, force: true }));
    await execa("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt]);
    cleanups.push(() => execa("umount", [mnt]));
    const dir = join(mnt, "repo");
    await mkdir(dir);
    const repo = await Repository.init(new LocalObjectStore(dir), { chunkSize: CS, workers: 1 });
    cleanups.push(() => repo.close());
    const small = randomBytes(8 * CS);
    const w0 = await repo.beginSnapshot({ vm });
    const d0 = await w0.addDisk({
      target: "vda",
      virtualSize: small.length,
      sourceFormat: "raw",
      kind: "full",
    });
    await d0.write(0, small);
    await d0.finish();
    const ok = await w0.seal(seal);

    const w = await repo.beginSnapshot({ vm });
    const d = await w.addDisk({ target: "vda", virtualSize: 16 * MiB, sourceFormat: "raw", kind: "full" });
    let err: unknown;
    try {
      for (let off = 0; off < 16 * MiB; off += CS) await d.write(off, randomBytes(CS));
      await d.finish();
      await w.seal(seal);
    } catch (e) {
      err = e;
      await w.abort();
    }
    expect(isCairnError(err, "resource-exhausted")).toBe(true);
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toMatch(/no space left/);
    expect((await repo.listSnapshots()).map((m) => m.id)).toEqual([ok.id]);
    // The abort deleted what it had staged: the space is free again for verify's and GC's locks.
    const leftovers = await execa("find", [dir, "-name", "*.tmp-*"]);
    expect(leftovers.stdout).toBe("");
    expect((await verifyRepository(repo, { readData: true })).problems).toEqual([]);
    expect(await listLocks(repo.store)).toEqual([]);
  });
});
