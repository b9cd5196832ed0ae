import { hostname } from "node:os";
import type { AgentRole } from "../../shared/src/grpc/wire/hostInventory.js";
import { createLogger, type Logger } from "../../shared/src/log/createLogger.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";
import type { AgentConfig } from "./config/AgentConfig.js";
import { type AgentRuntime, createAgentRuntime } from "./createAgentRuntime.js";
import type { AgentRoleFacts } from "./inventory/collectHostInventory.js";
import { ReachKeeper } from "./reach/ReachKeeper.js";

/**
 * The daemon's parts, built from its roles (docs/transfer-paths.md §1). The hypervisor side
 * (virsh sessions, libvirt's event feed, guest freeze recovery, the interrupted-job watch) exists
 * only with the hypervisor role; a mover-only agent never starts virsh. Everything else (reach
 * probes, repository maintenance, the coordinator link) runs in every role.
 */
export interface AgentDaemonRuntime {
  config: AgentConfig;
  hostId: string;
  log: Logger;
  /** Roles and transfer facts as the inventory reports them. */
  roles: Omit<AgentRoleFacts, "repositories">;
  /** libvirt's side; undefined on a mover-only agent. */
  hypervisorSide: AgentRuntime | undefined;
  /** Repository reach probes and their newest results. */
  reach: ReachKeeper;
  /** Startup recovery (the hypervisor side's; nothing to do for a mover yet). */
  recover(signal: AbortSignal): Promise<Record<string, unknown>>;
  /** The watch for interrupted jobs while the daemon runs; stop it before exiting. */
  watchInterruptedJobs(): { stop(): Promise<void> };
}

/** `hostId`: the enrolled id when there is one (default: the config's, else the hostname). */
export async function createDaemonRuntime(
  config: AgentConfig,
  opts: { hostId?: string | undefined; log?: Logger } = {},
): Promise<AgentDaemonRuntime> {
  const log = opts.log ?? createLogger("cairn-agent", config.logLevel);
  const roles: AgentRole[] = config.roles;
  const hypervisorSide = roles.includes("hypervisor") ? await createAgentRuntime(config, log) : undefined;
  const hostId = opts.hostId ?? config.hostId ?? hostname();
  const reserve = config.localRepositoryReserveBytes;
  return {
    config,
    hostId,
    log,
    roles: {
      roles,
      transferAddress: config.transfer.address ?? "",
      applianceOf: config.transfer.applianceOf ?? "",
    },
    hypervisorSide,
    reach: new ReachKeeper({
      hostId,
      extraLocations: config.repositories,
      probeBytes: config.probeBytes,
      openStore: (location) =>
        openRepositoryStore(location, process.env, reserve === undefined ? {} : { reserveBytes: reserve }),
    }),
    recover: async (signal) => (hypervisorSide ? hypervisorSide.recover(signal) : {}),
    watchInterruptedJobs: () => hypervisorSide?.watchInterruptedJobs() ?? { stop: async () => {} },
  };
}
