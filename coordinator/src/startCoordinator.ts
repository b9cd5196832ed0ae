import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createServer } from "nice-grpc";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import {
  CoordinatorServiceDefinition,
  type CoordinatorServiceImplementation,
} from "../../shared/src/gen/cairn/v1/coordinator.js";
import { errorMappingMiddleware } from "../../shared/src/grpc/errorMappingMiddleware.js";
import { optionalClientCertCredentials } from "../../shared/src/grpc/optionalClientCertCredentials.js";
import { peerIdentityInterceptor } from "../../shared/src/grpc/peerIdentityInterceptor.js";
import { withUnimplemented } from "../../shared/src/grpc/withUnimplemented.js";
import type { Logger } from "../../shared/src/log/createLogger.js";
import { MetricsRegistry } from "../../shared/src/metrics/MetricsRegistry.js";
import { startMetricsServer } from "../../shared/src/metrics/startMetricsServer.js";
import { CAIRN_VERSION } from "../../shared/src/version.js";
import { TokenCache } from "./access/TokenCache.js";
import { AgentClients } from "./agents/AgentClients.js";
import { RunningOnAgents } from "./agents/RunningOnAgents.js";
import { adminAuthMiddleware } from "./auth/adminAuthMiddleware.js";
import { FailedAuthAudit } from "./auth/FailedAuthAudit.js";
import { type CoordinatorConfig, databasePath, pkiDir } from "./config/CoordinatorConfig.js";
import { EventSink } from "./fleet/EventSink.js";
import { JobHub } from "./jobs/JobHub.js";
import { JobRunner } from "./jobs/JobRunner.js";
import { Ledger } from "./ledger/Ledger.js";
import { Maintenance } from "./maintenance/Maintenance.js";
import { CoordinatorMetrics } from "./metrics/CoordinatorMetrics.js";
import { CertificateAuthority } from "./pki/CertificateAuthority.js";
import { ensureCoordinatorMarker } from "./pki/ensureCoordinatorMarker.js";
import { Restores } from "./restore/Restores.js";
import { retryDelayMs } from "./schedule/retryDelayMs.js";
import { PolicyCache } from "./scheduler/PolicyCache.js";
import { Scheduler } from "./scheduler/Scheduler.js";
import { accessRpcs } from "./service/accessRpcs.js";
import { adminRpcs } from "./service/adminRpcs.js";
import { agentRpcs } from "./service/agentRpcs.js";
import type { CoordinatorContext } from "./service/CoordinatorContext.js";
import { ledgerRpcs } from "./service/ledgerRpcs.js";
import { repositoryRpcs } from "./service/repositoryRpcs.js";
import { restoreRpcs } from "./service/restoreRpcs.js";
import { snapshotRecordOf } from "./snapshots/snapshotRecordOf.js";
import { SqliteStore } from "./store/sqlite/SqliteStore.js";
import { Reach } from "./transfer/Reach.js";

export const AGENT_METHODS = new Set(["Register", "Heartbeat", "StreamEvents"]);
export const PUBLIC_METHODS = new Set(["Enroll"]);

/** Where `cairn ca init` puts the coordinator's TLS identity. */
export function coordinatorIdentityPaths(config: CoordinatorConfig) {
  const dir = pkiDir(config);
  return {
    caDir: join(dir, "ca"),
    cert: join(dir, "coordinator-cert.pem"),
    key: join(dir, "coordinator-key.pem"),
  };
}

export interface RunningCoordinator {
  port: number;
  metricsPort: number | undefined;
  ctx: CoordinatorContext;
  scheduler: Scheduler;
  /** Runs one scheduling pass now (tests, benchmarks). */
  tick(): Promise<unknown>;
  close(): Promise<void>;
}

export interface StartOptions {
  now?: () => number;
  /** Don't run the scheduler loop (tests drive tick() themselves). */
  manualTicks?: boolean;
}

/**
 * Starts the coordinator: store (migrated), restart reconciliation (jobs that were running become
 * interrupted and are re-attached once their agent is back), the mutual-TLS gRPC server, the
 * scheduler loop and the metrics endpoint.
 */
export async function startCoordinator(
  config: CoordinatorConfig,
  log: Logger,
  options: StartOptions = {},
): Promise<RunningCoordinator> {
  const now = options.now ?? Date.now;
  const paths = coordinatorIdentityPaths(config);
  if (!existsSync(paths.cert))
    throw new CairnError("failed-precondition", `no coordinator certificate in ${pkiDir(config)}`, {
      hint: `run \`cairn ca init --state-dir ${config.stateDir}\` once before starting the coordinator`,
    });
  const signal = AbortSignal.timeout(60_000);
  const ca = await CertificateAuthority.load(paths.caDir, signal);
  const keyPem = await readFile(paths.key, "utf8");
  const marked = await ensureCoordinatorMarker(
    ca,
    paths,
    { certPem: await readFile(paths.cert, "utf8"), keyPem },
    signal,
  );
  const identity = { caPem: ca.caCertPem, certPem: marked.certPem, keyPem };
  const store = SqliteStore.open(databasePath(config));
  if (marked.reissued) {
    log.warn(
      { cert: paths.cert },
      "the coordinator certificate had no coordinator marker: re-issued for the same key (agents refuse callers without it)",
    );
    await store.appendAudit({
      atMs: now(),
      principal: "local",
      action: "ReissueCoordinatorCertificate",
      target: paths.cert,
      detail: "added the coordinator marker (same key)",
    });
  }
  const hub = new JobHub();
  const clients = new AgentClients(identity);
  const registry = new MetricsRegistry();
  const jobCounts: Record<string, number> = {};
  const metrics = new CoordinatorMetrics(registry, () => jobCounts);
  const tokens = new TokenCache(now);
  tokens.replaceAll(await store.listTokens());

  const audit = (principal: string, action: string, target: string, detail = "") =>
    store.appendAudit({ atMs: now(), principal, action, target, detail });
  // Refused calls are audited, at most one entry per source and reason a minute (a brute force
  // must not flood the log), the rest counted.
  const failedAuth = new FailedAuthAudit({ audit, now });
  const policies = new PolicyCache(log, config.policies);
  const maintenance = new Maintenance({
    store,
    hub,
    policies,
    log,
    now,
    maxAttempts: config.maxAttempts,
    audit,
    kick: () => kick(),
  });
  const ledger = new Ledger({
    store,
    clients,
    log,
    now,
    onReconciled: (r) => metrics.ledgerReconciled(r, now()),
  });
  const runner = new JobRunner({
    store,
    hub,
    clients,
    log,
    now,
    ledger,
    retryDelayMs: (attempt) =>
      retryDelayMs(attempt, { baseMs: config.retryBaseMs, maxMs: config.retryMaxMs }, Math.random),
    onTransition: (job, from) => metrics.jobTransition(job, from),
    onSuccess: async ({ job, snapshotId, bytesRead, bytesStored, freezeMs, manifestJson }) => {
      metrics.jobSucceeded(job, bytesRead, bytesStored, freezeMs);
      await store.setVmLastBackup(job.vmUuid, job.finishedMs ?? now());
      // The agent's result carries the manifest: the catalog never reads back what was just written.
      if (manifestJson) await store.putSnapshot(snapshotRecordOf(manifestJson, job.repository));
      else
        log.warn(
          { job: job.id, snapshotId },
          "the agent reported no manifest; the snapshot is indexed by the next scan",
        );
      const prec = job.policy ? await store.getPolicy(job.policy) : undefined;
      const policy = prec && policies.get(prec);
      if (policy && job.trigger === "schedule") await maintenance.afterBackup(job, policy);
      kick();
    },
    onMaintenanceDone: (job, report) => maintenance.done(job, report),
    onRestoreDone: (job): Promise<void> => restores.done(job),
  });
  const restores: Restores = new Restores({
    store,
    hub,
    runner,
    ledger,
    log,
    now,
    maxAttempts: config.maxAttempts,
    audit,
    kick: () => kick(),
  });

  const runningOnAgents = new RunningOnAgents();
  const scheduler = new Scheduler({
    store,
    runner,
    policies,
    fireMaintenance: (records, n) => maintenance.fireDue(records, n),
    runningOn: (hostId, afterMs) => runningOnAgents.since(hostId, afterMs),
    log,
    now,
    config: { lostAfterMs: config.lostAfterSeconds * 1000, maxAttempts: config.maxAttempts },
  });
  const stopping = new AbortController();
  const tick = async () => {
    const r = await scheduler.tick(stopping.signal);
    metrics.schedulePassSeconds(r.durationMs / 1000);
    for (const _ of r.lostHosts) metrics.hostEvent("lost");
    // Counted in SQL: parsing every open job after each pass, just for a gauge, was 10,000 documents
    // of garbage per pass once a policy had fired over the fleet.
    Object.assign(jobCounts, await store.countJobs(["queued", "running", "interrupted"]));
    return r;
  };
  let kickTimer: NodeJS.Timeout | undefined;
  function kick() {
    if (options.manualTicks || kickTimer || stopping.signal.aborted) return;
    kickTimer = setTimeout(() => {
      kickTimer = undefined;
      void tick().catch((err) => log.error({ err }, "scheduling pass failed"));
    }, 50);
  }

  const events = new EventSink(store, now);
  const reach = new Reach({
    store,
    clients,
    log,
    now,
    kick: () => kick(),
    intervalMs: config.reach.probeIntervalSeconds * 1000,
  });
  const ctx: CoordinatorContext = {
    store,
    hub,
    runner,
    policies,
    ca,
    log,
    config,
    metrics,
    events,
    now,
    kick,
    ledger,
    reach,
    audit: async (principal, action, target, detail) => {
      await audit(principal, action, target, detail);
      // The token cache must know new tokens and forget revoked ones at once.
      if (action === "CreateToken" || action === "RevokeToken") tokens.replaceAll(await store.listTokens());
    },
    maintenance,
    restores,
    runningOnAgents,
    failedAuth,
  };

  // A restart loses sight of running jobs: they are interrupted and re-attached by job id.
  for (const j of await store.listJobs({ states: ["running"] }))
    await runner.transition(
      j,
      "interrupted",
      "coordinator restarted while the job ran; re-attaching when its agent is online",
    );

  const server = createServer({ interceptors: [peerIdentityInterceptor(ca.caCertPem)] })
    .use(errorMappingMiddleware((err, method) => log.error({ err, method }, "internal error")))
    .use(
      adminAuthMiddleware({
        agentMethods: AGENT_METHODS,
        publicMethods: PUBLIC_METHODS,
        resolveToken: (hash) => tokens.get(hash),
        refusedToken: (hash) => tokens.refused(hash),
        onRefused: (r) => failedAuth.refused(r),
      }),
    );
  server.add(
    CoordinatorServiceDefinition,
    withUnimplemented<CoordinatorServiceImplementation>(
      CoordinatorServiceDefinition,
      {
        ...agentRpcs(ctx),
        ...adminRpcs(ctx),
        ...repositoryRpcs(ctx),
        ...accessRpcs(ctx),
        ...ledgerRpcs(ctx),
        ...restoreRpcs(ctx),
      },
      CAIRN_VERSION,
    ),
  );
  const port = await server.listen(
    config.listen,
    optionalClientCertCredentials(identity.caPem, identity.certPem, identity.keyPem),
  );
  const metricsServer = config.metricsListen
    ? await startMetricsServer({ listen: config.metricsListen, registry })
    : undefined;
  log.info(
    { listen: config.listen, port, metricsPort: metricsServer?.port, version: CAIRN_VERSION },
    "coordinator started",
  );

  const loop = options.manualTicks
    ? undefined
    : setInterval(
        () => void tick().catch((err) => log.error({ err }, "scheduling pass failed")),
        config.schedulerTickMs,
      );
  if (!options.manualTicks) kick();
  reach.start();

  return {
    port,
    metricsPort: metricsServer?.port,
    ctx,
    scheduler,
    tick,
    async close() {
      stopping.abort();
      reach.stop();
      if (loop) clearInterval(loop);
      if (kickTimer) clearTimeout(kickTimer);
      await runner.detachAll("coordinator stopping; re-attaching on restart");
      server.forceShutdown();
      await events.drain();
      await failedAuth.flush().catch((err) => log.error({ err }, "writing refused calls' counts failed"));
      clients.close();
      await metricsServer?.close();
      await store.close();
      log.info("coordinator stopped");
    },
  };
}
