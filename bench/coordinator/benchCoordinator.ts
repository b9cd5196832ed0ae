/**
 * npm run bench:coordinator — one coordinator (the real daemon, in its own process so its RSS is
 * its own) against 1,000 simulated agents over real gRPC with mutual TLS on loopback, 10 VMs each
 * (10,000 VMs). Each agent enrolls (one-time token, CSR signed by the fleet CA), registers, then
 * heartbeats on the coordinator's interval and streams domain events as fast as the coordinator
 * accepts them (closed loop, one call in flight per agent). Then a policy selecting all 10,000 VMs
 * fires: the scheduling pass that turns it into 10,000 jobs and starts what the limits allow is timed
 * by the coordinator itself (its log). Last stdout line: {"events_per_s","schedule_pass_ms","rss_mb"}.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { databasePath } from "../../coordinator/src/config/CoordinatorConfig.js";
import type { JobRecord } from "../../coordinator/src/store/records.js";
import { SqliteStore } from "../../coordinator/src/store/sqlite/SqliteStore.js";
import {
  enrollSimAgents,
  log,
  prepareBenchCoordinator,
  scrapeMetrics,
  startCoordinatorDaemon,
  startSimAgentServer,
  simUuid as uuid,
} from "../support/simFleet.js";

const AGENTS = Number(process.env.CAIRN_BENCH_AGENTS ?? 1000);

/** A finished nightly job of policy "fleet" (the one the bench fires), day `day` of the history. */
function historyJob(id: string, vmUuid: string, vmName: string, full: boolean, day: number): JobRecord {
  const at = Date.UTC(2026, 0, 1 + day, 3);
  return {
    id,
    kind: "backup",
    vmUuid,
    vmName,
    hostId: "history",
    policy: "fleet",
    repository: "main",
    mode: full ? "full" : "incremental",
    quiesce: "preferred",
    trigger: "schedule",
    state: "succeeded",
    attempt: 1,
    maxAttempts: 3,
    reason: "policy fleet fired",
    priority: 50,
    limits: { perHost: 1, perRepository: 50, global: 50 },
    bandwidthBytesPerSecond: 0,
    createdMs: at,
    updatedMs: at + 60_000,
    notBeforeMs: 0,
    startedMs: at,
    finishedMs: at + 60_000,
    snapshotId: `snap-${id}`,
    diskKinds: { vda: full ? "full" : "incremental" },
    phase: "",
  };
}
const VMS_PER_AGENT = Number(process.env.CAIRN_BENCH_VMS_PER_AGENT ?? 10);
const LOAD_SECONDS = Number(process.env.CAIRN_BENCH_SECONDS ?? 20);
const EVENTS_PER_CALL = 5;

const dir = mkdtempSync(join(tmpdir(), "cairn-bench-coord-"));
const bench = await prepareBenchCoordinator(dir);
const { config } = bench;

// A stand-in for the agents' AgentService: RunBackup streams stay open (jobs "running").
const agentServer = await startSimAgentServer(bench, {
  async *runBackup(_req, ctx) {
    await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
  },
});
const agentPort = agentServer.port;

// A month of nightly history under the policy that fires below (30 succeeded jobs per VM, a full
// every 7th): scheduling must not get slower, or larger, as job history grows.
const HISTORY_PER_VM = Number(process.env.CAIRN_BENCH_HISTORY_PER_VM ?? 30);
{
  const t = performance.now();
  const store = SqliteStore.open(databasePath(config));
  for (let ai = 0; ai < AGENTS; ai++) {
    const jobs: JobRecord[] = [];
    for (let v = 0; v < VMS_PER_AGENT; v++)
      for (let k = 0; k < HISTORY_PER_VM; k++)
        jobs.push(historyJob(`h-${ai}-${v}-${k}`, uuid(ai, v), `vm-${ai}-${v}`, k % 7 === 0, k));
    await store.insertJobs(jobs);
  }
  await store.close();
  log(
    `[bench] seeded ${AGENTS * VMS_PER_AGENT * HISTORY_PER_VM} succeeded jobs of history in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}
const { child, logFile, admin, rssNow } = await startCoordinatorDaemon(bench);
let rssPeak = 0;
const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssNow())), 250);

log(`[bench] enrolling ${AGENTS} agents`);
const t0 = performance.now();
const agents = await enrollSimAgents(bench, admin, AGENTS, VMS_PER_AGENT, agentPort);
const phaseRss: Record<string, number> = {};
const phase = (name: string) => {
  phaseRss[name] = Math.round(rssNow());
};
log(
  `[bench] enrolled and registered ${AGENTS * VMS_PER_AGENT} VMs in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
phase("registered");

log(
  `[bench] load: heartbeats every 5 s and one event stream per agent, as fast as the coordinator takes them, for ${LOAD_SECONDS} s`,
);
const scrape = async () => {
  const v = await scrapeMetrics(bench);
  return {
    events: v(/^cairn_domain_events_total (\S+)$/m),
    heapUsed: v(/^nodejs_memory_bytes\{kind="heap_used"\} (\S+)$/m),
    heapTotal: v(/^nodejs_memory_bytes\{kind="heap_total"\} (\S+)$/m),
    external: v(/^nodejs_memory_bytes\{kind="external"\} (\S+)$/m),
  };
};
let heartbeats = 0;
let errors = 0;
const loadStart = performance.now();
const stopAt = loadStart + LOAD_SECONDS * 1000;
const before = await scrape();
const t1 = performance.now();
// Where the coordinator's memory goes under load: V8 heap vs the rest (TLS, HTTP/2, SQLite).
const loadPeak = { heapTotal: 0, heapUsed: 0, rss: 0 };
const sampler = setInterval(() => {
  void scrape().then(
    (m) => {
      loadPeak.heapTotal = Math.max(loadPeak.heapTotal, m.heapTotal);
      loadPeak.heapUsed = Math.max(loadPeak.heapUsed, m.heapUsed);
      loadPeak.rss = Math.max(loadPeak.rss, rssNow() * 2 ** 20);
    },
    () => {},
  );
}, 1000);
await Promise.all(
  agents.map(async (a, ai) => {
    const beats = (async () => {
      await new Promise((r) => setTimeout(r, Math.random() * 5000));
      while (performance.now() < stopAt) {
        await a.client.heartbeat({ hostId: a.id, runningJobIds: [] }).then(
          () => heartbeats++,
          () => errors++,
        );
        await new Promise((r) => setTimeout(r, 5000));
      }
    })();
    let flip = 0;
    // Long-lived client stream, as CoordinatorLink keeps it: HTTP/2 flow control paces it.
    const messages = async function* () {
      while (performance.now() < stopAt) {
        const events = Array.from({ length: EVENTS_PER_CALL }, (_, k) => {
          const v = (flip + k) % VMS_PER_AGENT;
          const running = (flip + k) % 2 === 0;
          return {
            domainUuid: uuid(ai, v),
            domainName: `vm-${ai}-${v}`,
            kind: running ? "started" : "stopped",
            detail: running ? "running" : "shutoff",
            timestampMs: BigInt(Date.now()),
          };
        });
        flip++;
        yield { hostId: a.id, events };
        await new Promise((r) => setImmediate(r));
      }
    };
    await a.client.streamEvents(messages()).catch(() => errors++);
    await beats;
  }),
);
clearInterval(sampler);
const after = await scrape();
log(
  `[bench] under load, peaks: heap total ${(loadPeak.heapTotal / 2 ** 20).toFixed(0)} MiB, heap used ${(loadPeak.heapUsed / 2 ** 20).toFixed(0)} MiB, RSS ${(loadPeak.rss / 2 ** 20).toFixed(0)} MiB`,
);
phase("after_events");
const loadSeconds = (performance.now() - t1) / 1000;
const accepted = after.events - before.events;
const eventsPerS = accepted / loadSeconds;
log(
  `[bench] coordinator applied ${accepted} events in ${loadSeconds.toFixed(1)} s, ${heartbeats} heartbeats, ${errors} errors; heap ${(after.heapUsed / 2 ** 20).toFixed(0)} MiB, external ${(after.external / 2 ** 20).toFixed(0)} MiB`,
);

// The policy selects every VM by label, whatever its power state; fire it.
log(
  `[bench] coordinator RSS so far by phase (MiB): ${JSON.stringify(phaseRss)}, peak ${Math.round(rssPeak)}`,
);
log("[bench] a policy over all 10,000 VMs fires");
await admin.applyPolicy({
  yaml: `name: fleet\nselector: {labels: {fleet: bench}}\nschedule: {cron: "* * * * * *"}\nmode: {kind: incremental, fullEvery: 7}\nrepository: main\nconcurrency: {perHost: 1, perRepository: 50, global: 50}\n`,
});
const passes: { created: number; durationMs: number }[] = [];
const deadline = Date.now() + 60_000;
while (Date.now() < deadline && !passes.some((p) => p.created >= AGENTS * VMS_PER_AGENT * 0.99)) {
  await new Promise((r) => setTimeout(r, 1000));
  passes.length = 0;
  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    if (!line.includes('"scheduling pass"')) continue;
    const j = JSON.parse(line) as { created: number; durationMs: number };
    passes.push(j);
  }
}
await admin.deletePolicy({ name: "fleet" });
await new Promise((r) => setTimeout(r, 2000)); // steady-state passes over the 10,000 queued jobs
for (const line of readFileSync(logFile, "utf8").split("\n"))
  if (line.includes('"scheduling pass"') && !passes.some((p) => JSON.stringify(p) === line))
    passes.push(JSON.parse(line));
const firing = passes.filter((p) => p.created > 0);
const steady = passes.filter((p) => p.created === 0);
const schedulePassMs = Math.max(...firing.map((p) => p.durationMs), ...steady.map((p) => p.durationMs));
phase("after_schedule");
clearInterval(rssTimer);
rssPeak = Math.max(rssPeak, rssNow());
child.kill("SIGTERM");
await child;
agentServer.stop();
const result = {
  events_per_s: Math.round(eventsPerS),
  schedule_pass_ms: Math.round(schedulePassMs),
  rss_mb: Math.round(rssPeak),
};
const detail = {
  ...result,
  agents: AGENTS,
  vms: AGENTS * VMS_PER_AGENT,
  history_jobs: AGENTS * VMS_PER_AGENT * HISTORY_PER_VM,
  heartbeats,
  errors,
  jobs_created: firing.reduce((n, p) => n + p.created, 0),
  firing_pass_ms: firing.map((p) => Math.round(p.durationMs)),
  rss_mb_by_phase: phaseRss,
  steady_pass_ms_max: Math.round(Math.max(0, ...steady.map((p) => p.durationMs))),
  targets: { events_per_s: ">= 5000", schedule_pass_ms: "<= 500", rss_mb: "<= 300" },
};
await mkdir("bench/out", { recursive: true });
await writeFile("bench/out/coordinator.json", `${JSON.stringify(detail, null, 2)}\n`);
if (!process.env.CAIRN_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
else log(`[bench] kept ${dir}`);
log(JSON.stringify(detail));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
