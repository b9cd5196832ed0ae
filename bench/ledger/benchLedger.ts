/**
 * npm run bench:ledger — the checkpoint ledger (docs/checkpoint-ledger.md), two measurements:
 * 1. simulated fleet: 1,000 agents, 10,000 VMs, every VM live-migrates once; how many migrations
 *    per second the coordinator reconciles (simReconcile.ts);
 * Last stdout line: one JSON object.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { log } from "../support/simFleet.js";
import { simReconcile } from "./simReconcile.js";

const AGENTS = Number(process.env.CAIRN_BENCH_AGENTS ?? 1000);
const VMS_PER_AGENT = Number(process.env.CAIRN_BENCH_VMS_PER_AGENT ?? 10);

const dir = mkdtempSync(join(tmpdir(), "cairn-bench-ledger-"));
log(`[bench] simulated fleet: ${AGENTS} agents, ${AGENTS * VMS_PER_AGENT} VMs, each migrates once`);
const sim = await simReconcile(dir, AGENTS, VMS_PER_AGENT);
const result = { reconcile_events_per_s: sim.reconcile_events_per_s };
const detail = { ...result, sim, targets: { reconcile_events_per_s: ">= 500" } };
await mkdir("bench/out", { recursive: true });
await writeFile("bench/out/ledger.json", `${JSON.stringify(detail, null, 2)}\n`);
if (!process.env.CAIRN_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
else log(`[bench] kept ${dir}`);
log(JSON.stringify(detail));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
