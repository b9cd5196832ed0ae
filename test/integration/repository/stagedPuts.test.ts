import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";

describe("LocalObjectStore staged puts", () => {
  let dir = "";
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("a staged object never shows before commit, not even to another process's view after a crash", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    await s.put("chunks/aa/x", randomBytes(5000), { staged: true });
    expect(await s.head("chunks/aa/x")).toBeUndefined();
    // "Crash": a new store over the same directory, the first never commits.
    const after = new LocalObjectStore(dir);
    expect(await after.head("chunks/aa/x")).toBeUndefined();
    const listed: string[] = [];
    for await (const o of after.list("")) listed.push(o.key);
    expect(listed).toEqual([]);
    // Its temporary is there, invisible, and swept as a temporary.
    expect((await readdir(join(dir, "chunks", "aa"))).some((f) => f.startsWith(".x.tmp-"))).toBe(true);
    expect(await after.sweepTemporaries(0)).toBe(1);
  });

  it("commitStaged makes staged objects visible; a later staged put needs its own commit", async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-staged-"));
    const s = new LocalObjectStore(dir);
    const a = randomBytes(7000);
    await s.put("a", a, { staged: true });
    await s.commitStaged();
    expect((await s.get("a")).equals(a)).toBe(true);
    await s.put("b", a, { staged: true });
    expect(await s.head("b")).toBeUndefined();
    await s.commitStaged();
    expect((await s.head("b"))?.size).toBe(7000);
  });
});
