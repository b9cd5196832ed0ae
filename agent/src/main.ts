#!/usr/bin/env node
import { X509Certificate } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readPassphrase } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { hostInventory } from "../../shared/src/grpc/wire/hostInventory.js";
import { readIdentity } from "../../shared/src/pki/writeIdentity.js";
import { TokenBucket } from "../../shared/src/repository/decorators/TokenBucket.js";
import { openRepository } from "../../shared/src/repositoryLocation/openRepository.js";
import { CAIRN_VERSION } from "../../shared/src/version.js";
import { loadAgentConfig } from "./config/AgentConfig.js";
import { agentRepositorySettings } from "./config/agentRepositorySettings.js";
import { CoordinatorLink } from "./coordinator/CoordinatorLink.js";
import { CoordinatorPin } from "./coordinator/CoordinatorPin.js";
import { enrollAgent } from "./coordinator/enrollAgent.js";
import { createDaemonRuntime } from "./createDaemonRuntime.js";
import { spawnRunner } from "./hypervisor/runVirsh.js";
import { collectHostInventory } from "./inventory/collectHostInventory.js";
import { JobRegistry } from "./jobs/JobRegistry.js";
import { AgentMetrics } from "./metrics/AgentMetrics.js";
import { LibvirtRestoreHost } from "./restore/LibvirtRestoreHost.js";
import { lookupOwner } from "./restore/lookupOwner.js";
import { startAgentServer } from "./server/startAgentServer.js";
import { FileLibvirtTlsDir } from "./transfer/FileLibvirtTlsDir.js";
import { OpensslJobTlsMinter } from "./transfer/OpensslJobTlsMinter.js";
import { PendingExports } from "./transfer/PendingExports.js";
import { RepositoryCache } from "./transfer/RepositoryCache.js";
import { RouteQuickack } from "./transfer/RouteQuickack.js";

// grpc-js passes an IP address as TLS servername (Node's DEP0123): harmless, and noise for operators.
process.noDeprecation = true;

/**
 * cairn-agent: the daemon on every KVM host and on movers (docs/transfer-paths.md §1). Start: load
 * config → build what its roles need → recover (thaw guests left frozen, clean up interrupted jobs;
 * hypervisor role only) → serve AgentService. SIGTERM/SIGINT: abort running jobs (their cleanup
 * thaws guests and ends libvirt jobs), stop serving, exit 0.
 */
async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      version: { type: "boolean" },
      coordinator: { type: "string" },
      token: { type: "string" },
      "ca-file": { type: "string" },
      hostname: { type: "string" },
    },
  });
  if (values.version) {
    process.stdout.write(`cairn-agent ${CAIRN_VERSION}\n`);
    return;
  }
  const config = await loadAgentConfig(values.config);
  const identityDir = config.identityDir ?? join(config.stateDir, "identity");
  if (positionals[0] === "enroll") {
    const coordinator = values.coordinator ?? config.coordinator?.address;
    const token = values.token ?? process.env.CAIRN_ENROLL_TOKEN;
    const caFile = values["ca-file"];
    if (!coordinator || !token || !caFile)
      throw new CairnError(
        "invalid-argument",
        "enroll needs --coordinator <host:port>, --token <token> and --ca-file <ca.pem>",
        {
          hint: "get a token with `cairn hosts enroll-token <host-id>` on the coordinator",
        },
      );
    const r = await enrollAgent(
      { coordinator, token, caFile, identityDir, ...(values.hostname ? { hostname: values.hostname } : {}) },
      AbortSignal.timeout(60_000),
    );
    process.stdout.write(`enrolled as host ${r.hostId}; identity in ${identityDir}\n`);
    return;
  }
  if (positionals.length)
    throw new CairnError("invalid-argument", `unknown command ${positionals[0]}`, {
      hint: "commands: enroll; none runs the daemon",
    });
  const identity = await readIdentity(identityDir);
  if (config.coordinator && !identity)
    throw new CairnError(
      "failed-precondition",
      `this agent has a coordinator configured but no identity in ${identityDir}`,
      {
        hint: "enroll it first: cairn-agent enroll --coordinator <host:port> --token <token> --ca-file <ca.pem>",
      },
    );
  // The enrolled id names this host to the coordinator; the config may only repeat it.
  const enrolledHostId = config.coordinator && identity ? certificateCommonName(identity.certPem) : undefined;
  if (enrolledHostId && config.hostId && config.hostId !== enrolledHostId)
    throw new CairnError(
      "invalid-argument",
      `hostId ${config.hostId} in the config differs from the enrolled id ${enrolledHostId}`,
      {
        hint: "remove hostId from the config or enroll again under that id",
      },
    );
  const pin = identity && new CoordinatorPin(identityDir, identity.coordinatorPem);
  const rt = await createDaemonRuntime(config, { hostId: enrolledHostId });
  if (pin && !pin.isPinned)
    rt.log.warn(
      { identityDir },
      "no coordinator key pinned (enrolled by an older version): callers with the coordinator's markers are accepted until the first registration pins the coordinator's key",
    );
  const hv = rt.hypervisorSide;
  const startup = await rt.recover(AbortSignal.timeout(120_000));
  rt.log.info({ ...startup, roles: config.roles, version: CAIRN_VERSION }, "agent startup recovery done");
  const jobWatcher = rt.watchInterruptedJobs();
  const passphrase = await readPassphrase(config.repositoryPassphraseFile);
  const repositorySettings = agentRepositorySettings(config, passphrase);
  const jobs = new JobRegistry();
  const metrics = new AgentMetrics(jobs);
  const openRepo = (location: string, signal: AbortSignal, opts?: { bandwidthBytesPerSecond?: number }) =>
    openRepository(location, repositorySettings, signal, opts);
  // One bucket for every job this agent reads (docs/transfer-paths.md §7).
  const readLimiter =
    config.transfer.maxReadBytesPerSecond > 0
      ? new TokenBucket(config.transfer.maxReadBytesPerSecond)
      : undefined;
  const repositories = new RepositoryCache((location, signal) => openRepo(location, signal));
  // Not enrolled, there is nothing to authenticate callers with: no TCP at all, only a unix socket
  // that root (the daemon's user) alone may open.
  const socket = identity ? undefined : join(config.stateDir, "agent.sock");
  if (socket) {
    // As the first backup would make it (QEMU, another user, opens scratch files below it).
    await mkdir(config.stateDir, { recursive: true });
    rt.log.info(
      { socket, listen: config.listen },
      "not enrolled: serving gRPC only on a unix socket (mode 0600), not on listen; enroll to serve it with mutual TLS",
    );
  }
  const server = await startAgentServer(
    {
      listen: socket ? `unix:${socket}` : config.listen,
      ...(identity && pin ? { tls: { ...identity, coordinator: pin } } : {}),
    },
    {
      hypervisor: hv?.hypervisor,
      hostId: rt.hostId,
      libvirtUri: config.libvirtUri,
      roles: rt.roles,
      reach: rt.reach,
      maintenance: { jobs, openRepository: openRepo },
      restoreVm: hv && {
        host: new LibvirtRestoreHost(
          hv.hypervisor,
          spawnRunner(config.libvirtUri),
          config.timeouts.virshCallMs,
        ),
        config: {
          nvramDir: config.nvramDir,
          swtpmStateDir: config.swtpmStateDir,
          owners: {
            nvram: { uid: hv.liveBackup.qemuUid, gid: hv.liveBackup.qemuGid },
            tpm: await lookupOwner(config.swtpmUser, config.swtpmGroup),
          },
        },
        log: rt.log,
      },
      backups: hv && {
        backup: {
          hypervisor: hv.hypervisor,
          guestAgent: hv.guestAgent,
          freezeMarkers: hv.freezeMarkers,
          log: rt.log,
          ...(readLimiter ? { readLimiter } : {}),
        },
        config: hv.liveBackup,
        jobs,
        openRepository: openRepo,
        onJobEnd: (o) => metrics.jobEnded(o),
        transfer: {
          address: config.transfer.address,
          ports: { min: config.transfer.portMin, max: config.transfer.portMax },
          readerTimeoutMs: config.transfer.readerTimeoutSeconds * 1000,
          maxExportBytesPerSecond: config.transfer.maxExportBytesPerSecond,
          minter: new OpensslJobTlsMinter(),
          libvirtTlsDir: new FileLibvirtTlsDir({
            dir: config.transfer.libvirtTlsDir,
            qemuConfPath: config.transfer.libvirtQemuConf,
            qemuUser: config.qemuUser,
          }),
          pending: new PendingExports(),
        },
      },
      reader: identity && {
        jobs,
        repositories,
        identityKeyPem: identity.keyPem,
        nbdRequestSize: config.nbd.requestSize,
        nbdDepth: config.nbd.depth,
        readLimiter,
        quickack: new RouteQuickack(rt.log),
        log: rt.log,
      },
    },
    rt.log,
  );
  const metricsServer = config.metricsListen ? await metrics.serve(config.metricsListen) : undefined;
  let link: CoordinatorLink | undefined;
  if (config.coordinator && identity && pin && enrolledHostId) {
    const hostId = enrolledHostId;
    link = new CoordinatorLink(
      {
        address: config.coordinator.address,
        advertiseAddress: config.coordinator.advertiseAddress ?? advertise(config.listen, server.port),
        hostId,
        identity,
        pin,
        pollMs: config.coordinator.inventoryPollSeconds * 1000,
      },
      {
        hypervisor: hv?.hypervisor,
        events: hv?.events,
        jobs,
        log: rt.log,
        inventory: async (signal) => {
          const facts = await collectHostInventory(
            hv?.hypervisor,
            { hostId, libvirtUri: config.libvirtUri, ...rt.roles, repositories: rt.reach.latest() },
            signal,
          );
          return hostInventory.toWire(facts);
        },
      },
    );
    link.start();
  }
  process.stdout.write(
    `cairn-agent ${CAIRN_VERSION} listening ${socket ? `on unix socket ${socket} (not enrolled)` : `on port ${server.port} (mTLS)`}${
      metricsServer ? `, metrics on port ${metricsServer.port}` : ""
    }\n`,
  );
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    rt.log.info({ signal: sig, running: jobs.runningJobIds() }, "agent stopping");
    await link?.stop();
    await jobWatcher.stop();
    await jobs.abortAll(`agent stopping (${sig})`, 60_000);
    await repositories.closeAll();
    await metricsServer?.close();
    await server.close();
    rt.log.info("agent stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

function certificateCommonName(pem: string): string {
  const m = /CN\s*=\s*([^,\n]+)/.exec(new X509Certificate(pem).subject);
  if (!m?.[1])
    throw new CairnError("corrupt", "the enrolled certificate has no CN", { hint: "enroll again" });
  return m[1].trim();
}

/** host:port the coordinator dials: the listen host (0.0.0.0 becomes 127.0.0.1) and the bound port. */
function advertise(listen: string, port: number): string {
  const host = listen.slice(0, listen.lastIndexOf(":"));
  return `${host === "0.0.0.0" || host === "" ? "127.0.0.1" : host}:${port}`;
}

main().catch((err) => {
  const e = err instanceof CairnError ? err : undefined;
  process.stderr.write(`cairn-agent: ${e ? e.userMessage : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
