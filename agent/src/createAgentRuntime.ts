import { hostname } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { createLogger, type Logger } from "../../shared/src/log/createLogger.js";
import type { BackupConfig } from "./backup/BackupRequest.js";
import type { AgentConfig } from "./config/AgentConfig.js";
import type { DomainEventSource } from "./events/DomainEventSource.js";
import { VirshDomainEventSource } from "./events/VirshDomainEventSource.js";
import { FreezeMarkers } from "./guest/FreezeMarkers.js";
import type { GuestAgent } from "./guest/GuestAgent.js";
import { recoverFrozenGuests } from "./guest/recoverFrozenGuests.js";
import { VirshGuestAgent } from "./guest/VirshGuestAgent.js";
import type { Hypervisor } from "./hypervisor/Hypervisor.js";
import { VirshHypervisor } from "./hypervisor/VirshHypervisor.js";
import { VirshSessionPool } from "./hypervisor/VirshSessionPool.js";
import { InterruptedJobWatcher } from "./recovery/InterruptedJobWatcher.js";
import { type RecoveredJob, recoverInterruptedJobs } from "./recovery/recoverInterruptedJobs.js";

export interface AgentRuntime {
  config: AgentConfig;
  hostId: string;
  log: Logger;
  hypervisor: Hypervisor;
  /** libvirt's lifecycle events (a `virsh event` listener, started by whoever runs it). */
  events: DomainEventSource;
  guestAgent: GuestAgent;
  freezeMarkers: FreezeMarkers;
  liveBackup: BackupConfig;
  /** Startup recovery: thaw guests left frozen, clean up after interrupted jobs. */
  recover(signal: AbortSignal): Promise<{ thawed: string[]; jobs: RecoveredJob[] }>;
  /**
   * The daemon's watch for jobs whose owner (the local CLI, another agent process) died while it
   * runs: cleaned up within seconds instead of at the next start. Stop it before exiting.
   */
  watchInterruptedJobs(): InterruptedJobWatcher;
}

/** Wires the agent's adapters from its config (used by the daemon and the local CLI alike). */
export async function createAgentRuntime(
  config: AgentConfig,
  log = createLogger("cairn-agent", config.logLevel),
): Promise<AgentRuntime> {
  // Warm virsh sessions: no process start per call, which keeps the guest's freeze window short.
  const pool = new VirshSessionPool(config.libvirtUri);
  const hypervisor = new VirshHypervisor({
    uri: config.libvirtUri,
    callTimeoutMs: config.timeouts.virshCallMs,
    runner: pool.run,
  });
  const guestAgent = new VirshGuestAgent({ uri: config.libvirtUri, runner: pool.run });
  const freezeMarkers = new FreezeMarkers(join(config.stateDir, "frozen"));
  const workDir = join(config.stateDir, "work");
  const liveBackup: BackupConfig = {
    workDir,
    qemuUid: await lookupId("passwd", config.qemuUser),
    qemuGid: await lookupId("group", config.qemuGroup),
    freezeTimeoutMs: config.timeouts.freezeMs,
    thawTimeoutMs: config.timeouts.thawMs,
    maxFrozenMs: config.timeouts.maxFrozenMs,
    guestPingTimeoutMs: config.timeouts.guestPingMs,
    hookTimeoutMs: config.timeouts.hookMs,
    nbdRequestSize: config.nbd.requestSize,
    nbdDepth: config.nbd.depth,
    vmConfigFiles: { swtpmStateDir: config.swtpmStateDir, nvramDir: config.nvramDir },
  };
  return {
    config,
    hostId: config.hostId ?? hostname(),
    log,
    hypervisor,
    events: new VirshDomainEventSource({ uri: config.libvirtUri, log }),
    guestAgent,
    freezeMarkers,
    liveBackup,
    async recover(signal) {
      const thawed = await recoverFrozenGuests(guestAgent, freezeMarkers, log, {
        timeoutMs: config.timeouts.thawMs,
        signal,
      });
      const jobs = await recoverInterruptedJobs({ hypervisor, log }, workDir, signal);
      return { thawed, jobs };
    },
    watchInterruptedJobs() {
      const w = new InterruptedJobWatcher({ hypervisor, log }, workDir, {
        intervalMs: 1_000,
        retryAfterMs: 30_000,
        recordlessAfterMs: 10 * 60_000,
      });
      w.start();
      return w;
    },
  };
}

async function lookupId(db: "passwd" | "group", name: string): Promise<number> {
  const r = await execa("getent", [db, name], { reject: false });
  const id = Number.parseInt(String(r.stdout).split(":")[2] ?? "", 10);
  if (!Number.isInteger(id)) {
    throw new CairnError(
      "invalid-argument",
      `${db === "passwd" ? "user" : "group"} ${name} does not exist on this host`,
      {
        hint: `set ${db === "passwd" ? "qemuUser" : "qemuGroup"} in the agent config to the account libvirt runs QEMU as`,
      },
    );
  }
  return id;
}
