import type { Database } from "better-sqlite3";
import { chainHistory } from "../../jobs/chainHistory.js";
import type { JobRecord } from "../records.js";

/**
 * Versioned schema migrations, applied in order inside one transaction each; PRAGMA user_version
 * holds the number applied. Never edit a released migration: append a new one. A migration is SQL,
 * or a function when it must compute (a backfill that follows a rule defined in code).
 * Records keep their queried fields as columns and the rest as JSON (`doc`), so adding a field
 * rarely needs a migration.
 */
export const MIGRATIONS: readonly (string | ((db: Database) => void))[] = [
  `
  CREATE TABLE hosts (id TEXT PRIMARY KEY, status TEXT NOT NULL, last_seen_ms INTEGER NOT NULL, doc TEXT NOT NULL);
  CREATE TABLE vms (uuid TEXT PRIMARY KEY, name TEXT NOT NULL, host_id TEXT NOT NULL, doc TEXT NOT NULL);
  CREATE INDEX vms_name ON vms(name);
  CREATE INDEX vms_host ON vms(host_id);
  CREATE TABLE repositories (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
  CREATE TABLE policies (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
  CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, vm_uuid TEXT NOT NULL, created_ms INTEGER NOT NULL, doc TEXT NOT NULL);
  CREATE INDEX jobs_state ON jobs(state);
  CREATE INDEX jobs_vm ON jobs(vm_uuid, created_ms);
  CREATE TABLE job_transitions (job_id TEXT NOT NULL, at_ms INTEGER NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL);
  CREATE INDEX job_transitions_job ON job_transitions(job_id);
  CREATE TABLE snapshots (id TEXT PRIMARY KEY, repository TEXT NOT NULL, vm_uuid TEXT NOT NULL, created_ms INTEGER NOT NULL, doc TEXT NOT NULL);
  CREATE INDEX snapshots_vm ON snapshots(vm_uuid, created_ms);
  CREATE TABLE tokens (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, doc TEXT NOT NULL);
  CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, doc TEXT NOT NULL);
  `,
  // 2: per policy and VM, the chain counters "a full every N" needs, kept as jobs succeed, so a
  // scheduling pass no longer reads every succeeded job ever (millions after a year of a large
  // fleet). Backfilled from the jobs already there, by the same rule (chainHistory).
  (db) => {
    db.exec(`CREATE TABLE chain_state (policy TEXT NOT NULL, vm_uuid TEXT NOT NULL,
      full_count INTEGER NOT NULL, runs_since_full INTEGER NOT NULL, PRIMARY KEY (policy, vm_uuid))`);
    const jobs = (
      db.prepare("SELECT doc FROM jobs WHERE state = 'succeeded'").all() as { doc: string }[]
    ).map((r) => JSON.parse(r.doc) as JobRecord);
    const insert = db.prepare("INSERT INTO chain_state VALUES (?, ?, ?, ?)");
    for (const policy of new Set(jobs.map((j) => j.policy).filter((p): p is string => p !== null))) {
      for (const [vm, h] of chainHistory(jobs, policy)) insert.run(policy, vm, h.fullCount, h.runsSinceFull);
    }
  },
  // 3: jobs have a kind (backup, or repository maintenance run by an agent); snapshots keep the
  // manifest the agent reported, so the coordinator never reads it back from the repository. The
  // newest jobs of a state come from an index: choosing an agent for a maintenance job reads the
  // latest successes, and sorting a year of them per scheduling pass cost ~100 ms.
  `
  UPDATE jobs SET doc = json_set(doc, '$.kind', 'backup') WHERE json_extract(doc, '$.kind') IS NULL;
  ALTER TABLE snapshots ADD COLUMN manifest TEXT;
  CREATE INDEX jobs_state_created ON jobs(state, created_ms, id);
  `,
  // 4: the checkpoint ledger (docs/checkpoint-ledger.md) with its change log, and the lifecycle
  // events agents report per VM: appended in order, without an index by VM (an index, or a table
  // clustered by VM, dirtied pages all over the tree and cost the event stream 40% of its rate);
  // a VM's events are found by reading back from the newest, and the table keeps the last million. The partial index finds the entries reconciliation looks at
  // (pending, suspect) without scanning a fleet's committed history.
  `
  CREATE TABLE ledger (vm_uuid TEXT NOT NULL, checkpoint TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, created_ms INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (vm_uuid, checkpoint, target));
  CREATE INDEX ledger_open ON ledger(state) WHERE state IN ('pending', 'suspect');
  CREATE TABLE ledger_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, vm_uuid TEXT NOT NULL, doc TEXT NOT NULL);
  CREATE INDEX ledger_changes_vm ON ledger_changes(vm_uuid, seq);
  CREATE TABLE vm_events (seq INTEGER PRIMARY KEY, vm_uuid TEXT NOT NULL, at_ms INTEGER NOT NULL,
    host_id TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, from_libvirt INTEGER NOT NULL);
  `,
  // 5: what each host reached at its last probe of each repository (docs/transfer-paths.md §2),
  // keyed by the repository's id (or, for a report that opened nothing, by name or location).
  `
  CREATE TABLE repository_reach (host_id TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (host_id, key));
  `,
];
