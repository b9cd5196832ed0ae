import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isCairnError } from "../../shared/src/errors/CairnError.js";
import { type ObjectStore, putParts } from "../../shared/src/repository/ports/ObjectStore.js";

/**
 * The ObjectStore contract (shared/src/repository/ports/ObjectStore.ts), run against every
 * adapter. `make` returns a fresh, empty store for each test.
 */
export function objectStoreContract(name: string, make: () => Promise<ObjectStore>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    it("put then get returns the same bytes; overwrite replaces", async () => {
      const s = await make();
      const a = randomBytes(300_000);
      await s.put("chunks/ab/abc", a);
      expect((await s.get("chunks/ab/abc")).equals(a)).toBe(true);
      await s.put("chunks/ab/abc", Buffer.from("second"));
      expect((await s.get("chunks/ab/abc")).toString()).toBe("second");
    });

    it("staged puts are complete, visible and listed after commitStaged; a commit with nothing staged is a no-op", async () => {
      const s = await make();
      await s.commitStaged();
      const objs = Array.from({ length: 20 }, (_, i) => [`chunks/st/${i}`, randomBytes(1000 + i)] as const);
      await Promise.all(objs.map(([k, v]) => s.put(k, v, { staged: true })));
      await s.commitStaged();
      for (const [k, v] of objs) expect((await s.get(k)).equals(v)).toBe(true);
      const listed: string[] = [];
      for await (const o of s.list("chunks/st/")) listed.push(o.key);
      expect(listed.sort()).toEqual(objs.map(([k]) => k).sort());
    });

    it("a store that says its staged puts are hidden shows none before commitStaged", async () => {
      const s = await make();
      if (s.stagedPutsHidden !== true) return; // S3, memory: staged puts show at once (allowed)
      const v = randomBytes(5000);
      const [before] = await Promise.all([s.head("chunks/hd/x"), s.put("chunks/hd/x", v, { staged: true })]);
      expect(before).toBeUndefined();
      expect(await s.head("chunks/hd/x")).toBeUndefined();
      const listed: string[] = [];
      for await (const o of s.list("chunks/hd/")) listed.push(o.key);
      expect(listed).toEqual([]);
      await s.commitStaged();
      expect((await s.get("chunks/hd/x")).equals(v)).toBe(true);
    });

    it("discardStaged drops only its owner's staged puts, and only those not yet visible", async () => {
      const s = await make();
      const mine = {};
      const theirs = {};
      await s.discardStaged(mine); // nothing staged: a no-op
      const [x, y, z] = [randomBytes(3000), randomBytes(3001), randomBytes(3002)];
      await s.put("chunks/ds/x", x, { staged: true, owner: mine });
      await s.put("chunks/ds/y", y, { staged: true, owner: theirs });
      await s.put("chunks/ds/z", z, { staged: true });
      await s.discardStaged(mine);
      await s.commitStaged();
      expect((await s.get("chunks/ds/y")).equals(y)).toBe(true);
      expect((await s.get("chunks/ds/z")).equals(z)).toBe(true);
      // Where staged puts show at once (S3, memory) x is already an object: GC's to remove.
      if (s.stagedPutsHidden === true) expect(await s.head("chunks/ds/x")).toBeUndefined();
      await s.discardStaged(theirs); // after the commit: nothing of theirs is staged any more
      expect((await s.get("chunks/ds/y")).equals(y)).toBe(true);
    });

    it("putParts stores the parts' concatenation, plain or staged, and ranges read across them", async () => {
      const s = await make();
      const parts = [randomBytes(70_000), Buffer.alloc(0), randomBytes(5), randomBytes(9000)];
      const whole = Buffer.concat(parts);
      await putParts(s, "packs/ab/plain", parts);
      expect((await s.get("packs/ab/plain")).equals(whole)).toBe(true);
      await putParts(s, "packs/ab/staged", parts, { staged: true });
      await s.commitStaged();
      expect((await s.get("packs/ab/staged")).equals(whole)).toBe(true);
      expect(
        (await s.get("packs/ab/staged", { range: { offset: 69_990, length: 20 } })).equals(
          whole.subarray(69_990, 70_010),
        ),
      ).toBe(true);
      expect((await s.head("packs/ab/staged"))?.size).toBe(whole.length);
    });

    it("stores empty objects", async () => {
      const s = await make();
      await s.put("empty", Buffer.alloc(0));
      expect((await s.get("empty")).length).toBe(0);
      expect((await s.head("empty"))?.size).toBe(0);
    });

    it("get of a missing key is not-found; head is undefined", async () => {
      const s = await make();
      const e = await s.get("nope/x").catch((x: unknown) => x);
      expect(isCairnError(e, "not-found")).toBe(true);
      expect(await s.head("nope/x")).toBeUndefined();
    });

    it("range get returns exactly the range, clipped to the object", async () => {
      const s = await make();
      const a = randomBytes(10_000);
      await s.put("r", a);
      expect((await s.get("r", { range: { offset: 100, length: 50 } })).equals(a.subarray(100, 150))).toBe(
        true,
      );
      expect((await s.get("r", { range: { offset: 9_990, length: 50 } })).equals(a.subarray(9_990))).toBe(
        true,
      );
      expect((await s.get("r", { range: { offset: 20_000, length: 5 } })).length).toBe(0);
    });

    it("head reports size and a recent last-modified time", async () => {
      const s = await make();
      const before = Date.now() - 5_000;
      await s.put("h/one", randomBytes(1234));
      const info = await s.head("h/one");
      expect(info?.size).toBe(1234);
      expect(info!.lastModified.getTime()).toBeGreaterThan(before - 60_000);
    });

    it("delete is idempotent", async () => {
      const s = await make();
      await s.put("d", Buffer.from("x"));
      await s.delete("d");
      await s.delete("d");
      expect(await s.head("d")).toBeUndefined();
    });

    it("list yields exactly the keys under a prefix, with sizes", async () => {
      const s = await make();
      const keys = [
        "chunks/aa/aa1",
        "chunks/aa/aa2",
        "chunks/bb/bb1",
        "indexes/i1",
        "snapshots/s1",
        "config",
      ];
      for (const k of keys) await s.put(k, Buffer.from(k));
      const list = async (p: string) => {
        const out: string[] = [];
        for await (const o of s.list(p)) {
          expect(o.size).toBe(Buffer.byteLength(o.key));
          out.push(o.key);
        }
        return out.sort();
      };
      expect(await list("chunks/")).toEqual(["chunks/aa/aa1", "chunks/aa/aa2", "chunks/bb/bb1"]);
      expect(await list("chunks/aa/")).toEqual(["chunks/aa/aa1", "chunks/aa/aa2"]);
      expect(await list("snapshots/")).toEqual(["snapshots/s1"]);
      expect(await list("locks/")).toEqual([]);
      expect(await list("")).toEqual([...keys].sort());
    });

    it("lists more than one page of keys", async () => {
      const s = await make();
      const keys = Array.from({ length: 1100 }, (_, i) => `many/k${String(i).padStart(5, "0")}`);
      for (let i = 0; i < keys.length; i += 50)
        await Promise.all(keys.slice(i, i + 50).map((k) => s.put(k, Buffer.from("v"))));
      const got: string[] = [];
      for await (const o of s.list("many/")) got.push(o.key);
      expect(got.sort()).toEqual(keys);
    }, 120_000);

    it("rejects keys outside the grammar", async () => {
      const s = await make();
      for (const k of ["../etc/passwd", "/abs", "a//b", ".hidden", "a/../b", ""]) {
        const e = await s.put(k, Buffer.from("x")).catch((x: unknown) => x);
        expect(isCairnError(e, "invalid-argument")).toBe(true);
      }
    });

    it("honours an aborted signal", async () => {
      const s = await make();
      const ac = new AbortController();
      ac.abort();
      const e = await s.put("x", Buffer.from("x"), { signal: ac.signal }).catch((x: unknown) => x);
      expect(isCairnError(e, "aborted")).toBe(true);
      expect(await s.head("x")).toBeUndefined();
    });

    it("concurrent puts of the same key leave one whole value", async () => {
      const s = await make();
      const vals = Array.from({ length: 8 }, () => randomBytes(100_000));
      await Promise.all(vals.map((v) => s.put("same", v)));
      const got = await s.get("same");
      expect(vals.some((v) => v.equals(got))).toBe(true);
    });
  });
}
