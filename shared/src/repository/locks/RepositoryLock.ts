import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { CairnError, isCairnError } from "../../errors/CairnError.js";
import { LOCKS_PREFIX } from "../layout.js";
import type { ObjectStore } from "../ports/ObjectStore.js";

export type LockKind = "shared" | "exclusive";

const lockRecordSchema = z.object({
  kind: z.enum(["shared", "exclusive"]),
  host: z.string(),
  pid: z.number().int(),
  purpose: z.string(),
  createdAt: z.string(),
  refreshedAt: z.string(),
});
export type LockRecord = z.infer<typeof lockRecordSchema>;

export interface LockInfo extends LockRecord {
  key: string;
  stale: boolean;
  staleReason: string | undefined;
}

export interface LockOptions {
  signal?: AbortSignal | undefined;
  /** How often the holder rewrites refreshedAt (default 60 s). */
  refreshMs?: number;
  /** A lock not refreshed for this long is stale (default 5 min). */
  staleAfterMs?: number;
  /** Keep retrying a conflicting lock this long before failing (default 0: fail at once). */
  waitMs?: number;
}

/** A held lock (format §8). release() is idempotent. */
export interface HeldLock {
  readonly key: string;
  readonly kind: LockKind;
  release(): Promise<void>;
}

const DEFAULT_REFRESH = 60_000;
const DEFAULT_STALE = 5 * 60_000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** All lock records, each marked stale or live. Unreadable records count as live (be careful). */
export async function listLocks(store: ObjectStore, options: LockOptions = {}): Promise<LockInfo[]> {
  const staleAfter = options.staleAfterMs ?? DEFAULT_STALE;
  const out: LockInfo[] = [];
  const keys: string[] = [];
  for await (const o of store.list(LOCKS_PREFIX, { signal: options.signal })) keys.push(o.key);
  for (const key of keys) {
    let rec: LockRecord;
    try {
      rec = lockRecordSchema.parse(
        JSON.parse((await store.get(key, { signal: options.signal })).toString("utf8")),
      );
    } catch (e) {
      if (isCairnError(e, "not-found")) continue; // released meanwhile
      if (isCairnError(e)) throw e;
      rec = {
        kind: "exclusive",
        host: "?",
        pid: 0,
        purpose: "unreadable lock record",
        createdAt: "",
        refreshedAt: "",
      };
    }
    let staleReason: string | undefined;
    const age = Date.now() - Date.parse(rec.refreshedAt);
    if (rec.host === hostname() && rec.pid > 0 && !pidAlive(rec.pid))
      staleReason = `process ${rec.pid} on this host is gone`;
    else if (Number.isFinite(age) && age > staleAfter)
      staleReason = `not refreshed for ${Math.round(age / 1000)} s`;
    out.push({ ...rec, key, stale: staleReason !== undefined, staleReason });
  }
  return out;
}

/** Deletes stale locks only (explicit operator action: `cairn repo unlock`). Returns what it removed. */
export async function breakStaleLocks(store: ObjectStore, options: LockOptions = {}): Promise<LockInfo[]> {
  const stale = (await listLocks(store, options)).filter((l) => l.stale);
  for (const l of stale) await store.delete(l.key, { signal: options.signal });
  return stale;
}

/**
 * Acquires a lock by write-then-check (no conditional writes needed): write our record, list all
 * locks, and back off if a conflicting one exists. Two racing acquirers both see each other.
 */
export async function acquireLock(
  store: ObjectStore,
  kind: LockKind,
  purpose: string,
  options: LockOptions = {},
): Promise<HeldLock> {
  const key = `${LOCKS_PREFIX}${kind}-${randomBytes(8).toString("hex")}`;
  const createdAt = new Date().toISOString();
  const record = (): Buffer =>
    Buffer.from(
      JSON.stringify({
        kind,
        host: hostname(),
        pid: process.pid,
        purpose,
        createdAt,
        refreshedAt: new Date().toISOString(),
      }),
    );
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    await store.put(key, record(), { signal: options.signal });
    const others = (await listLocks(store, options)).filter((l) => l.key !== key);
    const conflicts = others.filter((l) => kind === "exclusive" || l.kind === "exclusive");
    if (conflicts.length === 0) break;
    await store.delete(key, { signal: options.signal });
    if (Date.now() >= deadline) {
      const c = conflicts[0]!;
      const stale = conflicts.filter((l) => l.stale);
      throw new CairnError(
        "failed-precondition",
        `repository ${store.location} is locked: ${c.kind} lock by ${c.purpose} (host ${c.host}, pid ${c.pid}` +
          `${c.stale ? `, stale: ${c.staleReason}` : ""})`,
        {
          hint:
            stale.length > 0
              ? "the holder looks dead: break stale locks explicitly (cairn repo unlock) and retry"
              : `wait for it to finish, then retry the ${purpose}`,
          details: { locks: conflicts.map((l) => l.key) },
        },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt) * (0.5 + Math.random())));
  }
  let released = false;
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    // Refresh failures are not fatal here; a lock that cannot be refreshed eventually looks stale.
    refreshing = store.put(key, record()).catch(() => {});
  }, options.refreshMs ?? DEFAULT_REFRESH);
  timer.unref();
  return {
    key,
    kind,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await refreshing; // a refresh landing after the delete would resurrect the lock
      await store.delete(key);
    },
  };
}
