import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { chainHistory } from "../../../../coordinator/src/jobs/chainHistory.js";
import type { JobRecord } from "../../../../coordinator/src/store/records.js";
import { MIGRATIONS } from "../../../../coordinator/src/store/sqlite/migrations.js";
import { SqliteStore } from "../../../../coordinator/src/store/sqlite/SqliteStore.js";
import { sampleJob, storeContract } from "../../../support/storeContract.js";

const dir = mkdtempSync(join(tmpdir(), "cairn-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const paths = new WeakMap<object, string>();

storeContract("SqliteStore :memory:", async () => SqliteStore.open(":memory:"));
storeContract(
  "SqliteStore file (WAL)",
  async () => {
    const p = join(dir, `s${n++}.db`);
    const s = SqliteStore.open(p);
    paths.set(s, p);
    return s;
  },
  async (s) => {
    const p = paths.get(s) as string;
    await s.close();
    return SqliteStore.open(p);
  },
);

describe("SqliteStore migrations", () => {
  it("a new database is at the newest schema version and in WAL mode", () => {
    const p = join(dir, "m.db");
    const s = SqliteStore.open(p);
    expect(s.schemaVersion).toBe(MIGRATIONS.length);
    void s.close();
    const db = new Database(p);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.close();
  });

  it("migration 2 backfills the chain counters of a schema-1 database from its succeeded jobs", async () => {
    const p = join(dir, "v1.db");
    const db = new Database(p);
    db.exec(MIGRATIONS[0] as string);
    db.pragma("user_version = 1");
    // Seeded pseudo-random history: 3 policies, 5 VMs, fulls, incrementals, demoted ones, failures.
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const jobs: JobRecord[] = [];
    for (let i = 0; i < 400; i++) {
      const kind = rnd(10);
      jobs.push(
        sampleJob({
          id: `j${i}`,
          vmUuid: `vm${rnd(5)}`,
          policy: [`p0`, `p1`, null][rnd(3)] ?? null,
          mode: kind < 2 ? "full" : kind < 3 ? "copy" : kind < 8 ? "incremental" : "differential",
          diskKinds: kind === 9 ? { vda: "full: no checkpoint" } : { vda: "incremental" },
          state: rnd(6) === 0 ? "failed" : "succeeded",
          createdMs: i,
          finishedMs: i + 1,
        }),
      );
    }
    const ins = db.prepare("INSERT INTO jobs (id, state, vm_uuid, created_ms, doc) VALUES (?, ?, ?, ?, ?)");
    for (const j of jobs) ins.run(j.id, j.state, j.vmUuid, j.createdMs, JSON.stringify(j));
    db.close();
    const s = SqliteStore.open(p);
    expect(s.schemaVersion).toBe(MIGRATIONS.length);
    const succeeded = jobs.filter((j) => j.state === "succeeded");
    for (const policy of ["p0", "p1"]) {
      const want = chainHistory(succeeded, policy);
      expect(want.size).toBe(5);
      expect(await s.chainHistories(policy)).toEqual(want);
    }
    await s.close();
  });

  it("refuses a database from a newer coordinator instead of damaging it", () => {
    const p = join(dir, "newer.db");
    const db = new Database(p);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => SqliteStore.open(p)).toThrow(/newer than this coordinator knows/);
  });

  it("names the path when the database cannot be opened", () => {
    expect(() => SqliteStore.open(join(dir, "missing-dir", "x.db"))).toThrow(
      expect.objectContaining({
        message: expect.stringMatching(/missing-dir/),
        hint: expect.stringMatching(/writable/),
      }),
    );
  });
});
