/**
 * npm run bench:ledger — the checkpoint ledger (docs/checkpoint-ledger.md), two measurements:
 * 1. the lab (labMigration.ts): two real libvirt hosts and agents, a VM with two 512 MiB qcow2
 *    disks migrates after a full; is the next backup on the destination incremental, how much does
 *    it read against the guest's writes and against a full (the peer: a backup without the
 *    ledger), and how long from the VM's resume to the ledger saying the chain is kept;
 * 2. simulated fleet: 1,000 agents, 10,000 VMs, every VM live-migrates once; how many migrations
 *    per second the coordinator reconciles (simReconcile.ts).
 * CAIRN_BENCH_LEDGER_SIM_ONLY=1 skips the lab part. Last stdout line: one JSON object.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { log } from "../support/simFleet.js";
import { labMigration } from "./labMigration.js";
import { simReconcile } from "./simReconcile.js";

const AGENTS = Number(process.env.CAIRN_BENCH_AGENTS ?? 1000);
const VMS_PER_AGENT = Number(process.env.CAIRN_BENCH_VMS_PER_AGENT ?? 10);

const labResult = process.env.CAIRN_BENCH_LEDGER_SIM_ONLY ? undefined : await labMigration();
if (labResult) log(`[bench] lab: ${JSON.stringify(labResult)}`);
const dir = mkdtempSync(join(tmpdir(), "cairn-bench-ledger-"));
log(`[bench] simulated fleet: ${AGENTS} agents, ${AGENTS * VMS_PER_AGENT} VMs, each migrates once`);
const sim = await simReconcile(dir, AGENTS, VMS_PER_AGENT);
const result = {
  incremental_after_migration: labResult?.incremental_after_migration ?? null,
  read_over_dirty_after_migration: labResult?.read_over_dirty_after_migration ?? null,
  reconcile_ms: labResult?.reconcile_ms ?? null,
  reconcile_events_per_s: sim.reconcile_events_per_s,
  read_vs_full_after_migration: labResult?.read_vs_full_after_migration ?? null,
};
const detail = {
  ...result,
  lab: labResult ?? null,
  sim,
  targets: {
    incremental_after_migration: true,
    read_over_dirty_after_migration: "<= 1.05",
    reconcile_ms: "<= 2000",
    reconcile_events_per_s: ">= 500",
  },
};
await mkdir("bench/out", { recursive: true });
await writeFile("bench/out/ledger.json", `${JSON.stringify(detail, null, 2)}\n`);
if (!process.env.CAIRN_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
else log(`[bench] kept ${dir}`);
log(JSON.stringify(detail));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
