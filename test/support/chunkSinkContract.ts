import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isCairnError } from "../../shared/src/errors/CairnError.js";
import type { ObjectStore } from "../../shared/src/repository/ports/ObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import type { ChunkSink } from "../../shared/src/repository/sinks/ChunkSink.js";

export interface ChunkSinkFixture {
  store: ObjectStore;
  repo: Repository;
  /** A new sink writing into `repo` (one backup's), staging its puts under `owner`. */
  sink(owner: object): ChunkSink;
}

/**
 * The ChunkSink contract (shared/src/repository/sinks/ChunkSink.ts), run against every adapter.
 * `make` returns a fresh, empty repository of the adapter's layout for each test; `failing` one
 * whose puts of chunk data fail.
 */
export function chunkSinkContract(
  name: string,
  make: () => Promise<ChunkSinkFixture>,
  failing: () => Promise<ChunkSinkFixture>,
): void {
  const frameOf = async (repo: Repository, plain = randomBytes(20_000)) => {
    const h = await repo.pool.hash(Buffer.from(plain)); // the workers take the buffer given
    return { id: h.id, plain, framed: (await repo.pool.frame("chunk", h.id, h.data)).framed };
  };
  /** Another process: reads only what is committed and findable. */
  const reader = async (f: ChunkSinkFixture) => {
    const r = await Repository.open(f.store, { workers: 1 });
    if (r.packed) await r.refreshPackIndexes();
    return r;
  };
  const withReader = async <T>(f: ChunkSinkFixture, use: (r: Repository) => Promise<T>): Promise<T> => {
    const r = await reader(f);
    try {
      return await use(r);
    } finally {
      await r.close();
    }
  };

  describe(`ChunkSink contract: ${name}`, () => {
    it("a put chunk is new, readable by its backup at once, and by anyone after flush and commitStaged", async () => {
      const f = await make();
      const owner = {};
      const s = f.sink(owner);
      const c = await frameOf(f.repo);
      expect(await s.has(c.id, undefined)).toBe(false);
      expect(await s.put(c.id, c.framed, undefined)).toBe(true);
      expect(await f.repo.readChunk(c.id, "test", undefined, s.placeOf(c.id))).toEqual(c.plain);
      await s.flush(undefined);
      await f.store.commitStaged();
      s.sealed();
      await withReader(f, async (r) => expect(await r.readChunk(c.id, "test")).toEqual(c.plain));
    });

    it("put does not keep the frame once it resolved: the caller reuses the buffer", async () => {
      const f = await make();
      const s = f.sink({});
      const cs = await Promise.all([frameOf(f.repo), frameOf(f.repo), frameOf(f.repo)]);
      await Promise.all(cs.map((c) => s.put(c.id, c.framed, undefined)));
      for (const c of cs) c.framed.fill(0);
      await s.flush(undefined);
      await f.store.commitStaged();
      await withReader(f, async (r) => {
        for (const c of cs) expect(await r.readChunk(c.id, "test")).toEqual(c.plain);
      });
    });

    it("has is true for a sealed backup's chunks, never for others; storing a stored chunk again is harmless", async () => {
      const f = await make();
      const first = f.sink({});
      const c = await frameOf(f.repo);
      await first.put(c.id, Buffer.from(c.framed), undefined);
      await first.flush(undefined);
      await f.store.commitStaged();
      first.sealed();
      await withReader(f, async (r) => {
        const next = f.sink({});
        if (r.packed) await f.repo.refreshPackIndexes(); // what a backup's start does
        expect(await next.has(c.id, undefined)).toBe(true);
        expect(await next.has((await frameOf(f.repo)).id, undefined)).toBe(false);
        await next.put(c.id, c.framed, undefined);
        await next.flush(undefined);
        await f.store.commitStaged();
        expect(await r.readChunk(c.id, "test")).toEqual(c.plain);
      });
    });

    it("flush rejects with a put's failure", async () => {
      const f = await failing();
      const s = f.sink({});
      const c = await frameOf(f.repo);
      const put = s.put(c.id, c.framed, undefined);
      await expect(put).rejects.toThrow(/injected/);
      await expect(s.flush(undefined)).rejects.toThrow(/injected/);
    });

    it("every operation honours an aborted signal", async () => {
      const f = await make();
      const s = f.sink({});
      const c = await frameOf(f.repo);
      const ac = new AbortController();
      ac.abort();
      for (const op of [
        () => s.has(c.id, ac.signal),
        () => s.put(c.id, c.framed, ac.signal),
        () => s.flush(ac.signal),
        () => s.settle(ac.signal),
      ]) {
        const e = await op().then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(isCairnError(e, "aborted")).toBe(true);
      }
    });

    it("settle waits for the puts in flight and stores nothing more", async () => {
      const f = await make();
      const s = f.sink({});
      const cs = await Promise.all([frameOf(f.repo), frameOf(f.repo)]);
      let settled = 0;
      for (const c of cs) void s.put(c.id, c.framed, undefined).finally(() => settled++);
      await s.settle(undefined);
      expect(settled).toBe(cs.length);
      const keys = async () => {
        const out: string[] = [];
        for await (const o of f.store.list("")) out.push(o.key);
        return out.sort();
      };
      const after = await keys();
      await new Promise((r) => setTimeout(r, 100)); // longer than any idle flush
      expect(await keys()).toEqual(after);
      expect(after.some((k) => k.startsWith("packindex/"))).toBe(false);
    });
  });
}
