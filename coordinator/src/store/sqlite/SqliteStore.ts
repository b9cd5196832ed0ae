import Database from "better-sqlite3";
import { CairnError } from "../../../../shared/src/errors/CairnError.js";
import type { ChainHistory } from "../../jobs/chainHistory.js";
import { wasFull } from "../../jobs/newJob.js";
import { decideVmClaim, type VmClaim } from "../decideVmClaim.js";
import type * as records from "../records.js";
import type { Store } from "../Store.js";
import { MIGRATIONS } from "./migrations.js";

type Row = { doc: string };
/** How many VM lifecycle events the store keeps (the newest). */
const VM_EVENTS_KEPT = 1_000_000;
const parse = <T>(r: Row | undefined): T | undefined => (r ? (JSON.parse(r.doc) as T) : undefined);
const parseAll = <T>(rows: Row[]): T[] => rows.map((r) => JSON.parse(r.doc) as T);
/** `?, ?, …` for an IN list of n values. */
const placeholders = (n: number): string => Array.from({ length: n }, () => "?").join(",");

/**
 * The embedded Store: better-sqlite3 in WAL mode with synchronous=FULL, so a change is durable when
 * the call returns (the contract survives kill -9). Calls are synchronous underneath; the async
 * signatures belong to the port so that a networked store can implement it.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;

  /** Prepared statements of the hot paths, by SQL: preparing per call was a tenth of an event flood. */
  private readonly statements = new Map<string, Database.Statement>();
  /** The newest vm_events.seq (read once; this process is the database's only writer). */
  private eventSeq: number | undefined;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /** Opens (creating if needed) and migrates. `path` ":memory:" gives a private in-memory store. */
  static open(path: string): SqliteStore {
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (e) {
      throw new CairnError(
        "unavailable",
        `cannot open the coordinator database ${path}: ${(e as Error).message}`,
        {
          cause: e,
          hint: "check that the state directory exists and is writable by the coordinator",
        },
      );
    }
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("busy_timeout = 5000");
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      db.close();
      throw new CairnError(
        "failed-precondition",
        `the coordinator database ${path} has schema version ${version}, newer than this coordinator knows (${MIGRATIONS.length})`,
        { hint: "run the newer coordinator version, or restore the database from before the upgrade" },
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.transaction(() => {
        const m = MIGRATIONS[v]!;
        if (typeof m === "string") db.exec(m);
        else m(db);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
    return new SqliteStore(db);
  }

  get schemaVersion(): number {
    return this.db.pragma("user_version", { simple: true }) as number;
  }

  async putHost(h: records.HostRecord): Promise<void> {
    this.putHostSync(h);
  }
  private putHostSync(h: records.HostRecord): void {
    this.db
      .prepare("INSERT OR REPLACE INTO hosts (id, status, last_seen_ms, doc) VALUES (?, ?, ?, ?)")
      .run(h.id, h.status, h.lastSeenMs, JSON.stringify(h));
  }
  async getHost(id: string): Promise<records.HostRecord | undefined> {
    return parse(this.db.prepare("SELECT doc FROM hosts WHERE id = ?").get(id) as Row | undefined);
  }
  async listHosts(): Promise<records.HostRecord[]> {
    return parseAll(this.db.prepare("SELECT doc FROM hosts ORDER BY id").all() as Row[]);
  }
  async touchHost(id: string, nowMs: number): Promise<boolean> {
    const h = await this.getHost(id);
    if (!h) return false;
    await this.putHost({ ...h, status: "online", lastSeenMs: nowMs });
    return true;
  }
  async setHostStatus(id: string, status: records.HostRecord["status"]): Promise<void> {
    const h = await this.getHost(id);
    if (!h) throw new CairnError("not-found", `host ${id} is not registered`);
    const grant = this.db.transaction(() => {
      this.putHostSync({ ...h, status });
      // Claims waited for this host to stop running the VM or to go offline (decideVmClaim).
      if (status !== "online")
        for (const vm of parseAll<OwnedVm>(
          this.stmt("SELECT doc FROM vms WHERE host_id = ? AND json_extract(doc, '$.claim') IS NOT NULL").all(
            id,
          ) as Row[],
        ))
          this.grantClaim(vm, Date.now());
    });
    grant();
  }

  async setHostDrain(id: string, drain: records.HostDrain | null): Promise<void> {
    const h = await this.getHost(id);
    if (!h) throw new CairnError("not-found", `host ${id} is not registered`);
    await this.putHost({ ...h, drain });
  }

  async applyInventory(
    hostId: string,
    vms: readonly Omit<records.VmRecord, "hostId" | "lastBackupMs">[],
    nowMs: number,
  ): Promise<void> {
    const get = this.db.prepare("SELECT doc FROM vms WHERE uuid = ?");
    const onHost = this.db.prepare("SELECT doc FROM vms WHERE host_id = ?");
    this.db.transaction(() => {
      const seen = new Set<string>();
      for (const vm of vms) {
        const old = parse<OwnedVm>(get.get(vm.uuid) as Row | undefined);
        if (old && old.hostId !== hostId) {
          // Ownership (Store contract): a stale inactive definition here never takes a VM that
          // runs on another host, nor does a report of one still running on its (online) owner.
          const report = { hostId, state: vm.state, present: vm.present, atMs: nowMs };
          if (this.claim(old, report, nowMs) !== "take") continue;
        }
        seen.add(vm.uuid);
        const rec: OwnedVm = {
          ...vm,
          hostId,
          lastBackupMs: old?.lastBackupMs ?? 0,
          updatedMs: nowMs,
          stateMs: Math.max(nowMs, old?.stateMs ?? 0),
          ...(old?.claim && old.hostId === hostId ? { claim: old.claim } : {}),
        };
        this.putVm(rec);
        if (rec.state !== "running") this.grantClaim(rec, nowMs);
      }
      for (const old of parseAll<OwnedVm>(onHost.all(hostId) as Row[])) {
        if (seen.has(old.uuid) || !old.present) continue;
        const rec = { ...old, present: false, updatedMs: nowMs };
        this.putVm(rec);
        this.grantClaim(rec, nowMs);
      }
    })();
  }

  private putVm(rec: OwnedVm): void {
    this.stmt("INSERT OR REPLACE INTO vms (uuid, name, host_id, doc) VALUES (?, ?, ?, ?)").run(
      rec.uuid,
      rec.name,
      rec.hostId,
      JSON.stringify(rec),
    );
  }

  private auditVm(atMs: number, hostId: string, action: string, uuid: string, detail: string): void {
    this.stmt("INSERT INTO audit (at_ms, doc) VALUES (?, ?)").run(
      atMs,
      JSON.stringify({ atMs, principal: `agent:${hostId}`, action, target: uuid, detail }),
    );
  }

  /**
   * A report by a host that does not own the VM (decideVmClaim), inside the caller's transaction:
   * a contested claim is kept on the VM and audited once; a withdrawn one is dropped. "take" is
   * audited here and written by the caller.
   */
  private claim(
    old: OwnedVm,
    report: { hostId: string; state: string; present: boolean; atMs: number },
    nowMs: number,
  ): "take" | "other" {
    const status = this.stmt("SELECT status FROM hosts WHERE id = ?").pluck().get(old.hostId);
    const { verdict, reason } = decideVmClaim(old, report, status === "online");
    const name = `VM ${old.name} (${old.uuid})`;
    if (verdict === "take") {
      this.auditVm(
        nowMs,
        report.hostId,
        "VmMoved",
        old.uuid,
        `${name} moves from ${old.hostId} to ${report.hostId}: ${reason}`,
      );
      return "take";
    }
    if (verdict === "contest" && old.claim?.hostId !== report.hostId) {
      this.putVm({ ...old, claim: { hostId: report.hostId, atMs: report.atMs } });
      this.auditVm(nowMs, report.hostId, "VmClaimConflict", old.uuid, `${name}: ${reason}`);
    } else if (verdict === "withdraw") {
      const { claim: _, ...rest } = old;
      this.putVm(rest);
      this.auditVm(nowMs, report.hostId, "VmClaimWithdrawn", old.uuid, `${name}: ${reason}`);
    }
    return "other";
  }

  /** The owner no longer runs the VM: a host that claimed it meanwhile takes it (it runs there). */
  private grantClaim(owned: OwnedVm, nowMs: number): void {
    const claim = owned.claim;
    if (!claim) return;
    const { claim: _, ...rest } = owned;
    this.putVm({
      ...rest,
      hostId: claim.hostId,
      state: "running",
      present: true,
      updatedMs: nowMs,
      stateMs: Math.max(claim.atMs, owned.stateMs ?? 0),
    });
    this.auditVm(
      nowMs,
      claim.hostId,
      "VmMoved",
      owned.uuid,
      `VM ${owned.name} (${owned.uuid}) moves from ${owned.hostId} to ${claim.hostId}: it stopped running on ${owned.hostId} while ${claim.hostId} ran it`,
    );
  }

  async applyVmUpdates(updates: readonly records.VmUpdate[], nowMs: number): Promise<number> {
    // The hot path of the event stream: the owner's own events, patched inside SQLite (json_set)
    // instead of parsing and re-serialising the document in JS per event, which made each group
    // commit slow and filled the heap with garbage under an event flood. Reports from other hosts
    // (migrations, claims: rare) go through decideVmClaim in JS.
    const patch = this.stmt(
      `UPDATE vms SET
         name = CASE WHEN @name <> '' THEN @name ELSE name END,
         doc = json_set(doc,
           '$.name', CASE WHEN @name <> '' THEN @name ELSE json_extract(doc, '$.name') END,
           '$.state', @state,
           '$.present', CASE WHEN @present = 1 THEN json('true') ELSE json('false') END,
           '$.updatedMs', @nowMs,
           '$.stateMs', max(@atMs, coalesce(json_extract(doc, '$.stateMs'), 0)))
       WHERE uuid = @uuid AND host_id = @hostId`,
    );
    const claimed = this.stmt(
      "SELECT doc FROM vms WHERE uuid = ? AND json_extract(doc, '$.claim') IS NOT NULL",
    );
    const get = this.stmt("SELECT doc FROM vms WHERE uuid = ?");
    const event = this.stmt(
      "INSERT INTO vm_events (seq, vm_uuid, at_ms, host_id, kind, detail, from_libvirt) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    if (this.eventSeq === undefined)
      this.eventSeq = (this.db.prepare("SELECT max(seq) FROM vm_events").pluck().get() as number | null) ?? 0;
    let seq = this.eventSeq;
    return this.db.transaction(() => {
      let n = 0;
      for (const u of updates) {
        const atMs = u.atMs ?? nowMs;
        if (u.event)
          event.run(++seq, u.uuid, atMs, u.hostId, u.event.kind, u.event.detail, u.event.fromLibvirt ? 1 : 0);
        const present = u.present ? 1 : 0;
        if (
          patch.run({ name: u.name, hostId: u.hostId, state: u.state, present, nowMs, atMs, uuid: u.uuid })
            .changes > 0
        ) {
          n++;
          if (u.state !== "running" || !u.present) {
            const owned = parse<OwnedVm>(claimed.get(u.uuid) as Row | undefined);
            if (owned) this.grantClaim(owned, nowMs);
          }
          continue;
        }
        const old = parse<OwnedVm>(get.get(u.uuid) as Row | undefined);
        if (old) {
          const report = { hostId: u.hostId, state: u.state, present: u.present, atMs };
          if (this.claim(old, report, nowMs) !== "take") continue;
          const { claim: _, ...rest } = old;
          this.putVm({
            ...rest,
            name: u.name || old.name,
            hostId: u.hostId,
            state: u.state,
            present: u.present,
            updatedMs: nowMs,
            stateMs: Math.max(atMs, old.stateMs ?? 0),
          });
          n++;
          continue;
        }
        const rec: records.VmRecord = {
          uuid: u.uuid,
          name: u.name || u.uuid,
          hostId: u.hostId,
          state: u.state,
          labels: {},
          disks: [],
          present: u.present,
          updatedMs: nowMs,
          lastBackupMs: 0,
          stateMs: atMs,
        };
        this.putVm(rec);
        n++;
      }
      // Keep the newest million events: one sweep of the oldest every 10,000 appended.
      if (Math.floor(seq / 10_000) > Math.floor((this.eventSeq ?? 0) / 10_000))
        this.stmt("DELETE FROM vm_events WHERE seq <= ?").run(seq - VM_EVENTS_KEPT);
      this.eventSeq = seq;
      return n;
    })();
  }
  async listVmEvents(vmUuid: string, limit: number): Promise<records.VmEventRecord[]> {
    const rows = this.db
      .prepare(
        "SELECT at_ms, host_id, kind, detail, from_libvirt FROM vm_events WHERE vm_uuid = ? ORDER BY seq DESC LIMIT ?",
      )
      .all(vmUuid, limit) as {
      at_ms: number;
      host_id: string;
      kind: string;
      detail: string;
      from_libvirt: number;
    }[];
    return rows.map((r) => ({
      atMs: r.at_ms,
      vmUuid,
      hostId: r.host_id,
      kind: r.kind,
      detail: r.detail,
      fromLibvirt: r.from_libvirt === 1,
    }));
  }

  async writeLedger(
    batches: readonly records.LedgerBatchWrite[],
    nowMs: number,
  ): Promise<(Error | undefined)[]> {
    const get = this.db
      .prepare("SELECT state FROM ledger WHERE vm_uuid = ? AND checkpoint = ? AND target = ?")
      .pluck();
    const put = this.db.prepare(
      "INSERT OR REPLACE INTO ledger (vm_uuid, checkpoint, target, state, created_ms, doc) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const change = this.db.prepare("INSERT INTO ledger_changes (vm_uuid, doc) VALUES (?, ?)");
    // Each batch in its own savepoint (a nested transaction) inside one commit.
    const one = this.db.transaction((batch: records.LedgerBatchWrite) => {
      for (const { entry: e, from } of batch.writes) {
        const stored = get.get(e.vmUuid, e.checkpoint, e.target) as records.LedgerState | undefined;
        if ((stored ?? null) !== from)
          throw new CairnError(
            "failed-precondition",
            `ledger entry ${e.checkpoint}/${e.target} of VM ${e.vmUuid} is ${stored ?? "absent"}, expected ${from ?? "absent"}`,
          );
        put.run(e.vmUuid, e.checkpoint, e.target, e.state, e.createdMs, JSON.stringify(e));
        const c: records.LedgerChange = {
          atMs: nowMs,
          vmUuid: e.vmUuid,
          checkpoint: e.checkpoint,
          target: e.target,
          from: from ?? "",
          to: e.state,
          reason: e.reason || batch.reason,
        };
        change.run(e.vmUuid, JSON.stringify(c));
      }
    });
    return this.db.transaction(() =>
      batches.map((b) => {
        try {
          one(b);
          return undefined;
        } catch (e) {
          return e as Error;
        }
      }),
    )();
  }
  async vmsWithLiveChains(uuids: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const unique = [...new Set(uuids)];
    for (let i = 0; i < unique.length; i += 500) {
      const part = unique.slice(i, i + 500);
      const rows = this.stmt(
        `SELECT DISTINCT vm_uuid FROM ledger WHERE vm_uuid IN (${placeholders(part.length)}) AND state IN ('pending', 'committed', 'suspect')`,
      )
        .pluck()
        .all(...part) as string[];
      for (const r of rows) out.add(r);
    }
    return out;
  }
  async listLedger(vmUuid: string): Promise<records.LedgerEntry[]> {
    return parseAll(
      this.db
        .prepare("SELECT doc FROM ledger WHERE vm_uuid = ? ORDER BY created_ms, checkpoint, target")
        .all(vmUuid) as Row[],
    );
  }
  async listLedgerInState(states: readonly records.LedgerState[]): Promise<records.LedgerEntry[]> {
    if (!states.length) return [];
    return parseAll(
      this.db
        .prepare(
          `SELECT doc FROM ledger WHERE state IN (${placeholders(states.length)}) ORDER BY vm_uuid, created_ms, checkpoint, target`,
        )
        .all(...states) as Row[],
    );
  }
  async ledgerChanges(vmUuid: string, limit: number): Promise<records.LedgerChange[]> {
    return parseAll(
      this.db
        .prepare("SELECT doc FROM ledger_changes WHERE vm_uuid = ? ORDER BY seq DESC LIMIT ?")
        .all(vmUuid, limit) as Row[],
    );
  }
  async getVm(uuidOrName: string): Promise<records.VmRecord | undefined> {
    return parse(
      this.db
        .prepare("SELECT doc FROM vms WHERE uuid = ? OR name = ? ORDER BY (uuid = ?) DESC LIMIT 1")
        .get(uuidOrName, uuidOrName, uuidOrName) as Row | undefined,
    );
  }
  async vmHosts(uuids: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const unique = [...new Set(uuids)];
    for (let i = 0; i < unique.length; i += 500) {
      const part = unique.slice(i, i + 500);
      const rows = this.db
        .prepare(`SELECT uuid, host_id FROM vms WHERE uuid IN (${placeholders(part.length)})`)
        .all(...part) as { uuid: string; host_id: string }[];
      for (const r of rows) out.set(r.uuid, r.host_id);
    }
    return out;
  }
  async listVms(hostId?: string): Promise<records.VmRecord[]> {
    const rows = hostId
      ? this.db.prepare("SELECT doc FROM vms WHERE host_id = ? ORDER BY name").all(hostId)
      : this.db.prepare("SELECT doc FROM vms ORDER BY name").all();
    return parseAll(rows as Row[]);
  }
  async setVmLastBackup(uuid: string, ms: number): Promise<void> {
    const vm = await this.getVm(uuid);
    if (!vm) return;
    this.db
      .prepare("UPDATE vms SET doc = ? WHERE uuid = ?")
      .run(JSON.stringify({ ...vm, lastBackupMs: Math.max(vm.lastBackupMs, ms) }), uuid);
  }

  async putRepository(r: records.RepositoryRecord): Promise<boolean> {
    const existed = this.db.prepare("SELECT 1 FROM repositories WHERE name = ?").get(r.name) !== undefined;
    this.db
      .prepare("INSERT OR REPLACE INTO repositories (name, doc) VALUES (?, ?)")
      .run(r.name, JSON.stringify(r));
    return !existed;
  }
  async getRepository(name: string): Promise<records.RepositoryRecord | undefined> {
    return parse(this.db.prepare("SELECT doc FROM repositories WHERE name = ?").get(name) as Row | undefined);
  }
  async listRepositories(): Promise<records.RepositoryRecord[]> {
    return parseAll(this.db.prepare("SELECT doc FROM repositories ORDER BY name").all() as Row[]);
  }

  async putReach(hostId: string, reports: readonly records.ReachRecord[]): Promise<void> {
    const put = this.stmt("INSERT OR REPLACE INTO repository_reach (host_id, key, doc) VALUES (?, ?, ?)");
    const drop = this.stmt("DELETE FROM repository_reach WHERE host_id = ? AND key = ?");
    this.db.transaction(() => {
      for (const r of reports) {
        const rec = { ...r, hostId };
        put.run(hostId, reachKey(rec), JSON.stringify(rec));
        if (rec.repositoryId && rec.name) drop.run(hostId, `@${rec.name}`);
      }
    })();
  }
  async listReach(hostId?: string): Promise<records.ReachRecord[]> {
    const rows = hostId
      ? this.stmt("SELECT doc FROM repository_reach WHERE host_id = ? ORDER BY host_id, key").all(hostId)
      : this.stmt("SELECT doc FROM repository_reach ORDER BY host_id, key").all();
    return parseAll(rows as Row[]);
  }

  async putPolicy(p: records.PolicyRecord): Promise<boolean> {
    const existed = this.db.prepare("SELECT 1 FROM policies WHERE name = ?").get(p.name) !== undefined;
    this.db
      .prepare("INSERT OR REPLACE INTO policies (name, doc) VALUES (?, ?)")
      .run(p.name, JSON.stringify(p));
    return !existed;
  }
  async getPolicy(name: string): Promise<records.PolicyRecord | undefined> {
    return parse(this.db.prepare("SELECT doc FROM policies WHERE name = ?").get(name) as Row | undefined);
  }
  async listPolicies(): Promise<records.PolicyRecord[]> {
    return parseAll(this.db.prepare("SELECT doc FROM policies ORDER BY name").all() as Row[]);
  }
  async deletePolicy(name: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM policies WHERE name = ?").run(name).changes > 0;
  }
  async setPolicyLastFire(name: string, fireMs: number): Promise<void> {
    const p = await this.getPolicy(name);
    if (!p) throw new CairnError("not-found", `policy ${name} does not exist`);
    await this.putPolicy({ ...p, lastFireMs: fireMs });
  }
  async setPolicyMaintenance(name: string, state: records.PolicyMaintenanceState): Promise<void> {
    const p = await this.getPolicy(name);
    if (!p) throw new CairnError("not-found", `policy ${name} does not exist`);
    await this.putPolicy({ ...p, maintenance: { ...state } });
  }
  async setPolicyError(name: string, error: records.PolicyError | null): Promise<void> {
    const p = await this.getPolicy(name);
    if (!p) throw new CairnError("not-found", `policy ${name} does not exist`);
    const { lastError: _, ...rest } = p;
    await this.putPolicy(error ? { ...rest, lastError: { ...error } } : rest);
  }

  async insertJob(job: records.JobRecord): Promise<void> {
    try {
      await this.insertJobs([job]);
    } catch (e) {
      if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY")
        throw new CairnError("already-exists", `job ${job.id} already exists`, { cause: e });
      throw e;
    }
  }
  async insertJobs(jobs: readonly records.JobRecord[]): Promise<void> {
    const ins = this.db.prepare(
      "INSERT INTO jobs (id, state, vm_uuid, created_ms, doc) VALUES (?, ?, ?, ?, ?)",
    );
    const tr = this.db.prepare("INSERT INTO job_transitions VALUES (?, ?, ?, ?, ?)");
    this.db.transaction(() => {
      for (const j of jobs) {
        ins.run(j.id, j.state, j.vmUuid, j.createdMs, JSON.stringify(j));
        tr.run(j.id, j.createdMs, "", j.state, j.reason);
        if (j.state === "succeeded") this.countSucceeded(j);
      }
    })();
  }
  async updateJob(
    job: records.JobRecord,
    expectedState: records.JobRecord["state"],
    transitionReason?: string,
  ): Promise<void> {
    this.db.transaction(() => {
      const r = this.db
        .prepare("UPDATE jobs SET state = ?, doc = ? WHERE id = ? AND state = ?")
        .run(job.state, JSON.stringify(job), job.id, expectedState);
      if (r.changes === 0) {
        const cur = this.db.prepare("SELECT state FROM jobs WHERE id = ?").get(job.id) as
          | { state: string }
          | undefined;
        throw cur
          ? new CairnError("failed-precondition", `job ${job.id} is ${cur.state}, not ${expectedState}`)
          : new CairnError("not-found", `job ${job.id} does not exist`);
      }
      if (job.state !== expectedState)
        this.db
          .prepare("INSERT INTO job_transitions VALUES (?, ?, ?, ?, ?)")
          .run(job.id, job.updatedMs, expectedState, job.state, transitionReason ?? job.reason);
      if (job.state === "succeeded" && expectedState !== "succeeded") this.countSucceeded(job);
    })();
  }

  /** A job of a policy succeeded: its VM's chain under that policy grows, or restarts at a full. */
  private countSucceeded(job: records.JobRecord): void {
    if (job.policy === null || job.kind !== "backup") return;
    const full = wasFull(job);
    this.db
      .prepare(
        `INSERT INTO chain_state (policy, vm_uuid, full_count, runs_since_full) VALUES (?, ?, ?, ?)
         ON CONFLICT (policy, vm_uuid) DO UPDATE SET full_count = full_count + excluded.full_count,
           runs_since_full = CASE WHEN excluded.full_count > 0 THEN 0 ELSE runs_since_full + 1 END`,
      )
      .run(job.policy, job.vmUuid, full ? 1 : 0, full ? 0 : 1);
  }

  async chainHistories(policy: string): Promise<Map<string, ChainHistory>> {
    const rows = this.db
      .prepare("SELECT vm_uuid, full_count, runs_since_full FROM chain_state WHERE policy = ?")
      .all(policy) as { vm_uuid: string; full_count: number; runs_since_full: number }[];
    return new Map(
      rows.map((r) => [r.vm_uuid, { fullCount: r.full_count, runsSinceFull: r.runs_since_full }]),
    );
  }
  async getJob(id: string): Promise<records.JobRecord | undefined> {
    return parse(this.db.prepare("SELECT doc FROM jobs WHERE id = ?").get(id) as Row | undefined);
  }
  async listJobs(filter: records.JobFilter = {}): Promise<records.JobRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.states?.length) {
      where.push(`state IN (${placeholders(filter.states.length)})`);
      args.push(...filter.states);
    }
    if (filter.vmUuid) {
      where.push("vm_uuid = ?");
      args.push(filter.vmUuid);
    }
    const sql = `SELECT doc FROM jobs ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_ms DESC, id${
      filter.limit ? ` LIMIT ${Math.floor(filter.limit)}` : ""
    }`;
    return parseAll(this.db.prepare(sql).all(...args) as Row[]);
  }
  async countJobs(states: readonly records.JobRecord["state"][]): Promise<Record<string, number>> {
    const out: Record<string, number> = Object.fromEntries(states.map((st) => [st, 0]));
    if (!states.length) return out;
    const rows = this.db
      .prepare(
        `SELECT state, COUNT(*) AS n FROM jobs WHERE state IN (${placeholders(states.length)}) GROUP BY state`,
      )
      .all(...states) as { state: string; n: number }[];
    for (const r of rows) out[r.state] = r.n;
    return out;
  }
  async jobHistory(id: string): Promise<{ atMs: number; from: string; to: string; reason: string }[]> {
    return this.db
      .prepare(
        "SELECT at_ms AS atMs, from_state AS 'from', to_state AS 'to', reason FROM job_transitions WHERE job_id = ? ORDER BY rowid",
      )
      .all(id) as { atMs: number; from: string; to: string; reason: string }[];
  }

  async putSnapshot(s: records.SnapshotRecord): Promise<void> {
    // The manifest has a column of its own: listings never parse domain XML they do not show.
    const { manifestJson, ...doc } = s;
    this.db
      .prepare(
        "INSERT OR REPLACE INTO snapshots (id, repository, vm_uuid, created_ms, doc, manifest) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(s.id, s.repository, s.vmUuid, s.createdMs, JSON.stringify(doc), manifestJson ?? null);
  }
  async getSnapshot(id: string): Promise<records.SnapshotRecord | undefined> {
    const r = this.db.prepare("SELECT doc, manifest FROM snapshots WHERE id = ?").get(id) as
      | (Row & { manifest: string | null })
      | undefined;
    const rec = parse<records.SnapshotRecord>(r);
    return rec && r?.manifest ? { ...rec, manifestJson: r.manifest } : rec;
  }
  async listSnapshots(filter: records.SnapshotFilter = {}): Promise<records.SnapshotRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.vmUuid) {
      where.push("vm_uuid = ?");
      args.push(filter.vmUuid);
    }
    if (filter.repository) {
      where.push("repository = ?");
      args.push(filter.repository);
    }
    const sql = `SELECT doc FROM snapshots ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_ms, id`;
    return parseAll(this.db.prepare(sql).all(...args) as Row[]);
  }
  async deleteSnapshots(ids: readonly string[]): Promise<void> {
    const del = this.db.prepare("DELETE FROM snapshots WHERE id = ?");
    this.db.transaction(() => {
      for (const id of ids) del.run(id);
    })();
  }

  async putToken(t: records.TokenRecord): Promise<void> {
    this.db
      .prepare("INSERT OR REPLACE INTO tokens (hash, kind, doc) VALUES (?, ?, ?)")
      .run(t.hash, t.kind, JSON.stringify(t));
  }
  async getToken(hash: string): Promise<records.TokenRecord | undefined> {
    return parse(this.db.prepare("SELECT doc FROM tokens WHERE hash = ?").get(hash) as Row | undefined);
  }
  async listTokens(): Promise<records.TokenRecord[]> {
    return parseAll(this.db.prepare("SELECT doc FROM tokens ORDER BY kind, hash").all() as Row[]);
  }
  async consumeEnrollmentToken(hash: string, nowMs: number): Promise<records.TokenRecord | undefined> {
    return this.db.transaction(() => {
      const t = parse<records.TokenRecord>(
        this.db.prepare("SELECT doc FROM tokens WHERE hash = ?").get(hash) as Row | undefined,
      );
      if (t?.kind !== "enrollment" || t.usedMs !== null) return undefined;
      if (t.expiresMs !== null && t.expiresMs < nowMs) return undefined;
      const used = { ...t, usedMs: nowMs };
      this.db.prepare("UPDATE tokens SET doc = ? WHERE hash = ?").run(JSON.stringify(used), hash);
      return used;
    })();
  }

  async appendAudit(e: records.AuditRecord): Promise<void> {
    this.db.prepare("INSERT INTO audit (at_ms, doc) VALUES (?, ?)").run(e.atMs, JSON.stringify(e));
  }
  async listAudit(limit: number): Promise<records.AuditRecord[]> {
    return parseAll(this.db.prepare("SELECT doc FROM audit ORDER BY seq DESC LIMIT ?").all(limit) as Row[]);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/** A report's key: the repository id, or for one that opened nothing its name (else location). */
function reachKey(r: records.ReachRecord): string {
  return r.repositoryId || `@${r.name || r.location}`;
}

/** A VM's stored document: the record and a claim waiting on its owner (decideVmClaim). */
type OwnedVm = records.VmRecord & { claim?: VmClaim };

export const _conforms = null as unknown as SqliteStore satisfies Store;
