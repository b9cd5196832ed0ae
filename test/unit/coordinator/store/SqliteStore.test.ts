import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../../../coordinator/src/store/sqlite/migrations.js";
import { SqliteStore } from "../../../../coordinator/src/store/sqlite/SqliteStore.js";
import { storeContract } from "../../../support/storeContract.js";

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
