import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import {
  type AgentServiceDefinition,
  type AgentServiceImplementation,
  AgentServiceDefinition as Definition,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import { domainInfo } from "../../../shared/src/grpc/wire/domainInfo.js";
import { hostInventory } from "../../../shared/src/grpc/wire/hostInventory.js";
import { withUnimplemented } from "../../../shared/src/grpc/withUnimplemented.js";
import { createLogger, type Logger } from "../../../shared/src/log/createLogger.js";
import { CAIRN_VERSION } from "../../../shared/src/version.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { collectHostInventory } from "../inventory/collectHostInventory.js";
import { chainRpcs } from "./chainRpcs.js";
import { type BackupRpcDeps, runBackupRpc } from "./runBackupRpc.js";
import { runMaintenanceRpc } from "./runMaintenanceRpc.js";

export interface AgentServiceDeps {
  hypervisor: Hypervisor;
  hostId: string;
  libvirtUri: string;
  /** Backup execution; without it RunBackup/AbortJob answer UNIMPLEMENTED (inventory-only agent). */
  backups?: BackupRpcDeps;
  log?: Logger;
}

/** The gRPC AgentService: maps the core's types to the wire; RPCs not built yet answer UNIMPLEMENTED. */
export function createAgentService(deps: AgentServiceDeps): AgentServiceImplementation {
  const impl: Partial<AgentServiceImplementation> = {
    async getHostInventory(_req, ctx: CallContext) {
      const facts = await collectHostInventory(
        deps.hypervisor,
        { hostId: deps.hostId, libvirtUri: deps.libvirtUri },
        ctx.signal,
      );
      return { inventory: hostInventory.toWire(facts) };
    },
    async listDomains(_req, ctx: CallContext) {
      const domains = await deps.hypervisor.listDomains(ctx.signal);
      return { domains: domains.map(domainInfo.toWire) };
    },
    ...chainRpcs({ hypervisor: deps.hypervisor, log: deps.log ?? createLogger("cairn-agent", "silent") }),
  };
  const backups = deps.backups;
  if (backups) {
    impl.runBackup = (req, ctx: CallContext) => runBackupRpc(backups, req, ctx);
    impl.runMaintenance = (req, ctx: CallContext) =>
      runMaintenanceRpc(
        {
          jobs: backups.jobs,
          openRepository: (location, signal) => backups.openRepository(location, signal),
        },
        req,
        ctx,
      );
    impl.abortJob = async (req) => {
      if (!req.jobId.trim()) throw new CairnError("invalid-argument", "job_id is required");
      // Answers once the job's cleanup ran (or after 8 s: inside the coordinator's 10 s deadline).
      const r = await backups.jobs.abortAndWait(req.jobId, req.reason || "aborted by request", 8_000);
      return { found: r.found };
    };
  }
  return withUnimplemented<AgentServiceImplementation>(Definition, impl, CAIRN_VERSION);
}

export type { AgentServiceDefinition };
