import { describe, expect, it } from "vitest";
import { RepositoryCache } from "../../../../agent/src/transfer/RepositoryCache.js";
import type { Repository } from "../../../../shared/src/repository/Repository.js";

function fakeOpen(fail = new Set<string>()) {
  const opened: { location: string; closed: boolean }[] = [];
  const open = async (location: string) => {
    if (fail.has(location)) throw new Error(`cannot open ${location}`);
    const r = { location, closed: false };
    opened.push(r);
    return {
      close: async () => {
        r.closed = true;
      },
    } as unknown as Repository;
  };
  return { opened, open };
}

describe("RepositoryCache", () => {
  it("keeps one open repository per location between jobs, and closes it after being idle", async () => {
    const f = fakeOpen();
    const cache = new RepositoryCache(f.open, 50);
    const sig = AbortSignal.timeout(5_000);
    const a = await cache.acquire("/srv/a", sig);
    const b = await cache.acquire("/srv/a", sig);
    expect(a.repository).toBe(b.repository);
    a.release();
    b.release();
    const c = await cache.acquire("/srv/a", sig); // before the idle delay: the same one
    expect(c.repository).toBe(a.repository);
    expect(f.opened).toHaveLength(1);
    c.release();
    c.release(); // idempotent
    await new Promise((r) => setTimeout(r, 120));
    expect(f.opened[0]?.closed).toBe(true);
    const d = await cache.acquire("/srv/a", sig);
    expect(f.opened).toHaveLength(2);
    d.release();
    await cache.closeAll();
    expect(f.opened[1]?.closed).toBe(true);
  });

  it("never closes a repository in use, and does not keep a failed open", async () => {
    const f = fakeOpen(new Set(["/srv/bad"]));
    const cache = new RepositoryCache(f.open, 10);
    const sig = AbortSignal.timeout(5_000);
    const a = await cache.acquire("/srv/a", sig);
    await new Promise((r) => setTimeout(r, 50));
    expect(f.opened[0]?.closed).toBe(false);
    await expect(cache.acquire("/srv/bad", sig)).rejects.toThrow(/cannot open/);
    await expect(cache.acquire("/srv/bad", sig)).rejects.toThrow(/cannot open/);
    a.release();
    await cache.closeAll();
    expect(f.opened[0]?.closed).toBe(true);
  });
});
