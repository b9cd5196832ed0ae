import { mkdtempSync, rmSync } from "node:fs";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBES_PREFIX, probeLocation } from "../../../../agent/src/reach/probeLocation.js";
import { probeRepositories } from "../../../../agent/src/reach/probeRepositories.js";
import { ReachKeeper } from "../../../../agent/src/reach/ReachKeeper.js";
import { isCairnError } from "../../../../shared/src/errors/CairnError.js";
import { LocalObjectStore } from "../../../../shared/src/repository/backends/LocalObjectStore.js";
import { MemoryObjectStore } from "../../../../shared/src/repository/backends/MemoryObjectStore.js";
import type {
  GetOptions,
  ObjectStore,
  PutOptions,
} from "../../../../shared/src/repository/ports/ObjectStore.js";
import { Repository } from "../../../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../../../shared/src/repositoryLocation/openRepositoryStore.js";

const dir = mkdtempSync(join(tmpdir(), "cairn-reach-"));
const repoA = join(dir, "repo-a");
const repoB = join(dir, "repo-b");
/** Another access path to repo-a (as a SAN mount and an S3 URL would be). */
const repoAlias = join(dir, "alias-a");
let idA = "";
let idB = "";

async function keys(location: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of new LocalObjectStore(location).list(prefix)) out.push(o.key);
  return out;
}

beforeAll(async () => {
  // Encrypted: a probe must not need the passphrase.
  const a = await Repository.init(new LocalObjectStore(repoA), {
    chunkSize: 64 * 1024,
    passphrase: "secret",
    scryptN: 1024,
    workers: 1,
  });
  idA = a.config.id;
  await a.close();
  const b = await Repository.init(new LocalObjectStore(repoB), { chunkSize: 64 * 1024, workers: 1 });
  idB = b.config.id;
  await b.close();
  await symlink(repoA, repoAlias);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = {
  hostId: "mover-1",
  extraLocations: [] as string[],
  openStore: (l: string) => openRepositoryStore(l),
  probeBytes: 256 * 1024,
  signal: AbortSignal.timeout(15_000),
};

describe("probeRepositories on local repositories", () => {
  it("reaches a repository: its id, the target's name, write and read throughput, no error", async () => {
    const before = Date.now();
    const [r, ...rest] = await probeRepositories([{ name: "main", location: repoA }], base);
    expect(rest).toEqual([]);
    expect(r).toMatchObject({ repositoryId: idA, name: "main", location: repoA, reachable: true, error: "" });
    expect(r?.writeMiBs).toBeGreaterThan(0);
    expect(r?.readMiBs).toBeGreaterThan(0);
    expect(r?.probedMs).toBeGreaterThanOrEqual(before);
  });

  it("writes its probe object under probes/<host>- and removes it afterwards", async () => {
    const put: string[] = [];
    const openStore = (l: string): ObjectStore => {
      const s = new LocalObjectStore(l);
      const orig = s.put.bind(s);
      s.put = (key: string, data: Uint8Array, o?: PutOptions) => {
        put.push(key);
        return orig(key, data, o);
      };
      return s;
    };
    const [r] = await probeRepositories([{ name: "main", location: repoA }], { ...base, openStore });
    expect(r?.reachable).toBe(true);
    expect(put).toHaveLength(1);
    expect(put[0]).toMatch(/^probes\/mover-1-[0-9a-f]{16}$/);
    expect(await keys(repoA, PROBES_PREFIX)).toEqual([]);
  });

  it("a missing path is unreachable, the reason names the path", async () => {
    const missing = join(dir, "no-such-dir");
    const [r] = await probeRepositories([{ name: "gone", location: missing }], base);
    expect(r).toMatchObject({ repositoryId: "", name: "gone", reachable: false, writeMiBs: 0, readMiBs: 0 });
    expect(r?.error).toBe(`${missing} does not exist on this host`);
  });

  it("a directory without a repository is unreachable: not a Cairn repository", async () => {
    const empty = join(dir, "empty");
    await mkdir(empty);
    const [r] = await probeRepositories([{ name: "x", location: empty }], base);
    expect(r?.reachable).toBe(false);
    expect(r?.error).toBe(`${empty} is not a Cairn repository (it has no repository config)`);
    expect(await keys(empty, "")).toEqual([]); // nothing written where there is no repository
  });

  it("a directory whose config is garbage is unreachable with the reason", async () => {
    const bad = join(dir, "bad");
    await mkdir(bad);
    await writeFile(join(bad, "config"), "{not json");
    const [r] = await probeRepositories([{ name: "x", location: bad }], base);
    expect(r?.reachable).toBe(false);
    expect(r?.error).toMatch(new RegExp(`config of repository ${bad} is not valid JSON`));
  });

  it("an extra location of the same repository carries the target's name; another repository none", async () => {
    const reach = await probeRepositories([{ name: "main", location: repoA }], {
      ...base,
      // repoA again: probed once.
      extraLocations: [repoAlias, repoB, repoA],
    });
    expect(reach.map((r) => [r.location, r.repositoryId, r.name, r.reachable])).toEqual([
      [repoA, idA, "main", true],
      [repoAlias, idA, "main", true],
      [repoB, idB, "", true],
    ]);
  });

  it("probes at most `concurrency` locations at once and keeps the request's order", async () => {
    let running = 0;
    let most = 0;
    const openStore = (l: string): ObjectStore => {
      const s = new MemoryObjectStore(l);
      const get = s.get.bind(s);
      s.get = async (key: string, o?: GetOptions) => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return get(key, o);
      };
      return s;
    };
    const targets = Array.from({ length: 7 }, (_, i) => ({ name: `r${i}`, location: `m${i}` }));
    const reach = await probeRepositories(targets, { ...base, openStore, concurrency: 2 });
    expect(reach.map((r) => r.name)).toEqual(targets.map((t) => t.name));
    expect(most).toBe(2);
  });
});

/** A memory repository whose store misbehaves as `tweak` says. */
async function memoryRepo(tweak: (s: MemoryObjectStore) => void): Promise<MemoryObjectStore> {
  const s = new MemoryObjectStore("tweaked");
  await (await Repository.init(s, { chunkSize: 64 * 1024, workers: 1 })).close();
  tweak(s);
  return s;
}

async function probeKeys(s: ObjectStore): Promise<string[]> {
  const out: string[] = [];
  for await (const o of s.list(PROBES_PREFIX)) out.push(o.key);
  return out;
}

const one = { hostId: "h", bytes: 64 * 1024, timeoutMs: 5_000, signal: AbortSignal.timeout(15_000) };

describe("probeLocation failures", () => {
  it("a store that does not answer is unreachable after the timeout, naming the step", async () => {
    const s = await memoryRepo((m) => {
      m.get = () => new Promise<Buffer>(() => {}); // ignores its signal, never answers
    });
    const t0 = Date.now();
    const r = await probeLocation("slow-store", () => s, { ...one, timeoutMs: 200 });
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(r).toMatchObject({ reachable: false, repositoryId: "" });
    expect(r.error).toBe("no answer within 0.2 s while reading the config of slow-store");
  });

  it("a failed read-back still deletes the probe object", async () => {
    const s = await memoryRepo((m) => {
      const get = m.get.bind(m);
      m.get = async (key, o) => {
        if (key.startsWith(PROBES_PREFIX)) throw new Error("connection reset");
        return get(key, o);
      };
    });
    const deleted: string[] = [];
    const del = s.delete.bind(s);
    s.delete = async (key, o) => {
      deleted.push(key);
      return del(key, o);
    };
    const r = await probeLocation("flaky", () => s, one);
    expect(r.reachable).toBe(false);
    expect(r.repositoryId).toMatch(/^[0-9a-f]{32}$/);
    expect(r.error).toBe("reading the probe object back from flaky failed: connection reset");
    expect(deleted).toHaveLength(1);
    expect(await probeKeys(s)).toEqual([]);
  });

  it("a write that hangs past the timeout: the object is deleted once the late put lands", async () => {
    const s = await memoryRepo((m) => {
      const put = m.put.bind(m);
      m.put = async (key, data, o) => {
        if (!key.startsWith(PROBES_PREFIX)) return put(key, data, o);
        await new Promise((r) => setTimeout(r, 400));
        return put(key, data, {}); // lands after the probe gave up
      };
    });
    const r = await probeLocation("late", () => s, { ...one, timeoutMs: 100 });
    expect(r.error).toBe("no answer within 0.1 s while writing a probe object to late");
    await new Promise((res) => setTimeout(res, 500)); // past the late put
    expect(await probeKeys(s)).toEqual([]);
  });

  it("bytes that come back different make the location unreachable", async () => {
    const s = await memoryRepo((m) => {
      const get = m.get.bind(m);
      m.get = async (key, o) => {
        const b = await get(key, o);
        if (key.startsWith(PROBES_PREFIX)) b[0] = (b[0] ?? 0) ^ 0xff;
        return b;
      };
    });
    const r = await probeLocation("bitrot", () => s, one);
    expect(r.reachable).toBe(false);
    expect(r.error).toMatch(/probe object read back from bitrot differs/);
    expect(await probeKeys(s)).toEqual([]);
  });

  it("an invalid location is unreachable with the opener's reason", async () => {
    const r = await probeLocation("ftp://x/y", (l) => openRepositoryStore(l), one);
    expect(r.reachable).toBe(false);
    expect(r.error).toMatch(/unsupported repository location ftp:\/\/x\/y/);
  });

  it("the caller's abort is an error, not an unreachable location", async () => {
    const s = await memoryRepo(() => {});
    const e = await probeLocation("m", () => s, { ...one, signal: AbortSignal.abort() }).catch(
      (x: unknown) => x,
    );
    expect(isCairnError(e, "aborted") || (e as Error).name === "AbortError").toBe(true);
  });
});

describe("ReachKeeper", () => {
  it("keeps the newest result per location; an extra location keeps the name an earlier probe gave it", async () => {
    const k = new ReachKeeper({
      hostId: "h",
      extraLocations: [repoAlias],
      probeBytes: 4096,
      openStore: (l) => openRepositoryStore(l),
    });
    expect(k.latest()).toEqual([]);
    await k.probe([{ name: "main", location: repoA }], AbortSignal.timeout(10_000));
    const first = k.latest();
    expect(first.map((r) => [r.location, r.name])).toEqual([
      [repoA, "main"],
      [repoAlias, "main"],
    ]);
    await new Promise((r) => setTimeout(r, 5));
    // Asked about nothing: only the extra location is probed; it keeps its name and gets newer.
    const now = await k.probe([], AbortSignal.timeout(10_000));
    expect(now.map((r) => [r.location, r.name])).toEqual([[repoAlias, ""]]);
    const second = k.latest();
    expect(second.map((r) => [r.location, r.name])).toEqual([
      [repoA, "main"],
      [repoAlias, "main"],
    ]);
    expect(second[1]?.probedMs).toBeGreaterThan(first[1]?.probedMs ?? Infinity);
  });
});
