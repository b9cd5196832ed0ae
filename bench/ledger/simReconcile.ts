import { databasePath } from "../../coordinator/src/config/CoordinatorConfig.js";
import type { LedgerEntry } from "../../coordinator/src/store/records.js";
import { SqliteStore } from "../../coordinator/src/store/sqlite/SqliteStore.js";
import { DomainState } from "../../shared/src/gen/cairn/v1/common.js";
import {
  enrollSimAgents,
  log,
  prepareBenchCoordinator,
  scrapeMetrics,
  simUuid,
  startCoordinatorDaemon,
  startSimAgentServer,
} from "../support/simFleet.js";

export interface SimReconcileResult {
  agents: number;
  vms: number;
  migrations: number;
  reconciled: number;
  seconds: number;
  reconcile_events_per_s: number;
  events_sent: number;
  rss_mb: number;
  errors: number;
  cpu_seconds: { coordinator_s: number; agents_s: number };
}

/**
 * The fleet bench's 1,000 simulated agents and 10,000 VMs, each VM with a committed two-checkpoint
 * chain on its host in the ledger. Every VM then live-migrates to the next agent: the destination
 * reports it started (migrated, running) and the source that it stopped (migrated), as libvirt's
 * event stream does, each agent as fast as the coordinator accepts. The coordinator reconciles each
 * VM on its new host (DescribeChain, RedefineCheckpoints, ForgetCheckpoints on the old one, over
 * mutual TLS to the agents' server). Measured: migrations reconciled per second, from the first
 * event to the last reconciliation the coordinator's metrics count.
 */
export async function simReconcile(
  dir: string,
  agentsN: number,
  vmsPerAgent: number,
): Promise<SimReconcileResult> {
  const bench = await prepareBenchCoordinator(dir);
  let rpcErrors = 0;
  const server = await startSimAgentServer(bench, {
    describeChain: async (req) => ({
      found: true,
      domainName: req.domainUuid,
      state: DomainState.DOMAIN_STATE_RUNNING,
      persistent: true,
      checkpoints: [],
      bitmaps: [],
      activeJob: "",
    }),
    redefineCheckpoints: async (req) => ({
      redefined: req.checkpoints.map((c) => c.name),
      alreadyPresent: [],
      verdicts: req.checkpoints.flatMap((c) =>
        Object.keys(c.bitmaps).map((target) => ({ checkpoint: c.name, target, kept: true, reason: "" })),
      ),
      elapsedMs: 0,
    }),
    forgetCheckpoints: async (req) => ({ removed: req.names, refused: "" }),
  });
  // Seed the ledger: every VM has a full and an incremental checkpoint on its agent, two disks.
  {
    const t = performance.now();
    const store = SqliteStore.open(databasePath(bench.config));
    for (let a = 0; a < agentsN; a++) {
      const writes = [];
      for (let v = 0; v < vmsPerAgent; v++)
        for (const [k, cp] of ["cairn-root", "cairn-last"].entries())
          for (const target of ["vda", "vdb"]) {
            const entry: LedgerEntry = {
              vmUuid: simUuid(a, v),
              checkpoint: cp,
              target,
              parent: k ? "cairn-root" : null,
              bitmap: cp,
              xml: `<domaincheckpoint>\n  <name>${cp}</name>\n</domaincheckpoint>`,
              hostId: `sim-${String(a).padStart(4, "0")}`,
              snapshotId: `s-${a}-${v}-${k}`,
              jobId: `j-${a}-${v}-${k}`,
              repository: "main",
              kind: k ? "incremental" : "full",
              state: "committed",
              reason: "",
              createdMs: 1000 + k,
              changedMs: 1000 + k,
            };
            writes.push({ entry, from: null });
          }
      await store.writeLedger([{ writes, reason: "seeded" }], 1000);
    }
    await store.close();
    log(
      `[bench] seeded the ledger of ${agentsN * vmsPerAgent} VMs in ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
  }
  const daemon = await startCoordinatorDaemon(bench);
  let rssPeak = 0;
  const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, daemon.rssNow())), 250);
  const agents = await enrollSimAgents(bench, daemon.admin, agentsN, vmsPerAgent, server.port);
  log(`[bench] ${agentsN} agents registered ${agentsN * vmsPerAgent} VMs`);
  const kept = async () =>
    (await scrapeMetrics(bench))(/^cairn_ledger_reconciliations_total\{outcome="kept"\} (\S+)$/m) || 0;
  const before = await kept();
  const migrations = agentsN * vmsPerAgent;
  let sent = 0;
  const cpu0 = { coordinator: daemon.cpuSeconds(), bench: process.cpuUsage() };
  const t0 = performance.now();
  await Promise.all(
    agents.map(async (src, ai) => {
      const dst = agents[(ai + 1) % agents.length];
      if (!dst) return;
      const now = () => BigInt(Date.now());
      // The destination's stream, as libvirt 9.0 sends it: started/migrated (paused) when the
      // incoming migration begins, resumed/migrated (running) when it ends.
      const incoming = async function* () {
        for (let v = 0; v < vmsPerAgent; v++) {
          const uuid = simUuid(ai, v);
          const name = `vm-${ai}-${v}`;
          yield {
            hostId: dst.id,
            events: [
              {
                domainUuid: uuid,
                domainName: name,
                kind: "started",
                detail: "migrated",
                state: "paused",
                fromLibvirt: true,
                timestampMs: now(),
              },
              {
                domainUuid: uuid,
                domainName: name,
                kind: "resumed",
                detail: "migrated",
                state: "running",
                fromLibvirt: true,
                timestampMs: now(),
              },
            ],
          };
          sent += 2;
        }
      };
      const outgoing = async function* () {
        for (let v = 0; v < vmsPerAgent; v++) {
          yield {
            hostId: src.id,
            events: [
              {
                domainUuid: simUuid(ai, v),
                domainName: `vm-${ai}-${v}`,
                kind: "stopped",
                detail: "migrated",
                state: "shutoff",
                fromLibvirt: true,
                timestampMs: now(),
              },
            ],
          };
          sent++;
        }
      };
      await Promise.all([
        dst.client.streamEvents(incoming()).catch(() => rpcErrors++),
        src.client.streamEvents(outgoing()).catch(() => rpcErrors++),
      ]);
    }),
  );
  let reconciled = 0;
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    reconciled = (await kept()) - before;
    if (reconciled >= migrations) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (performance.now() - t0) / 1000;
  const benchCpu = process.cpuUsage(cpu0.bench);
  const cpu = {
    coordinator_s: Math.round((daemon.cpuSeconds() - cpu0.coordinator) * 10) / 10,
    agents_s: Math.round((benchCpu.user + benchCpu.system) / 1e5) / 10,
  };
  const m = await scrapeMetrics(bench);
  const skipped = m(/^cairn_ledger_reconciliations_total\{outcome="skipped"\} (\S+)$/m) || 0;
  clearInterval(rssTimer);
  daemon.child.kill("SIGTERM");
  await daemon.child;
  server.stop();
  log(
    `[bench] ${reconciled}/${migrations} migrations reconciled (kept) in ${seconds.toFixed(1)} s, ${skipped} skipped, ${rpcErrors} stream errors`,
  );
  return {
    agents: agentsN,
    vms: migrations,
    migrations,
    reconciled,
    seconds: Math.round(seconds * 10) / 10,
    reconcile_events_per_s: Math.round(reconciled / seconds),
    events_sent: sent,
    rss_mb: Math.round(rssPeak),
    errors: rpcErrors + skipped,
    // Both on this machine's cores: the coordinator's CPU and the simulated agents' (this process).
    cpu_seconds: cpu,
  };
}
