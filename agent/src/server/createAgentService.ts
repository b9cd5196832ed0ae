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
import { snapshotManifestSchema } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import { CAIRN_VERSION } from "../../../shared/src/version.js";
import type { ExportOutcome } from "../backup/pipeline/export/ExportSession.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { type AgentRoleFacts, collectHostInventory } from "../inventory/collectHostInventory.js";
import { checkJobId } from "../jobs/checkJobId.js";
import type { ReachKeeper } from "../reach/ReachKeeper.js";
import { chainRpcs } from "./chainRpcs.js";
import { probeRepositoriesRpc } from "./probeRepositoriesRpc.js";
import { type ReadExportRpcDeps, readExportRpc } from "./readExportRpc.js";
import { restoreDiskRpc } from "./restoreDiskRpc.js";
import { type RestoreVmRpcDeps, restoreVmRpc } from "./restoreVmRpc.js";
import { type BackupRpcDeps, runBackupRpc } from "./runBackupRpc.js";
import { type MaintenanceRpcDeps, runMaintenanceRpc } from "./runMaintenanceRpc.js";
import { withoutHypervisorRpcs } from "./withoutHypervisorRpcs.js";

export interface AgentServiceDeps {
  /**
   * The host's hypervisor. Absent on a mover-only agent (docs/transfer-paths.md §1): the chain RPCs
   * and RunBackup answer failed-precondition, ListDomains an empty list, and nothing asks libvirt.
   */
  hypervisor?: Hypervisor | undefined;
  hostId: string;
  libvirtUri: string;
  /** Roles and transfer facts for the inventory (default: a hypervisor, no transfer address). */
  roles?: Omit<AgentRoleFacts, "repositories"> | undefined;
  /** Backup execution; without it RunBackup answers UNIMPLEMENTED (inventory-only agent). */
  backups?: BackupRpcDeps | undefined;
  /** Repository maintenance jobs (every role; default: the backups' jobs and repositories). */
  maintenance?: MaintenanceRpcDeps | undefined;
  /** Whole-VM restores (hypervisor role); jobs and repositories are the maintenance ones. Else UNIMPLEMENTED. */
  restoreVm?: Omit<RestoreVmRpcDeps, "jobs" | "openRepository"> | undefined;
  /** Repository reach probes; without it ProbeRepositories answers UNIMPLEMENTED. */
  reach?: ReachKeeper | undefined;
  /** Reading other hosts' exports (network path, any role with an identity); else UNIMPLEMENTED. */
  reader?: ReadExportRpcDeps | undefined;
  log?: Logger;
}

/** The gRPC AgentService: maps the core's types to the wire; RPCs not built yet answer UNIMPLEMENTED. */
export function createAgentService(deps: AgentServiceDeps): AgentServiceImplementation {
  const hypervisor = deps.hypervisor;
  const reach = deps.reach;
  const impl: Partial<AgentServiceImplementation> = {
    async getHostInventory(_req, ctx: CallContext) {
      const facts = await collectHostInventory(
        hypervisor,
        {
          hostId: deps.hostId,
          libvirtUri: deps.libvirtUri,
          ...deps.roles,
          repositories: reach?.latest() ?? [],
        },
        ctx.signal,
      );
      return { inventory: hostInventory.toWire(facts) };
    },
    ...(hypervisor
      ? {
          async listDomains(_req, ctx: CallContext) {
            const domains = await hypervisor.listDomains(ctx.signal);
            return { domains: domains.map(domainInfo.toWire) };
          },
          ...chainRpcs({ hypervisor, log: deps.log ?? createLogger("cairn-agent", "silent") }),
        }
      : withoutHypervisorRpcs()),
  };
  const backups = hypervisor ? deps.backups : undefined;
  if (backups) impl.runBackup = (req, ctx: CallContext) => runBackupRpc(backups, req, ctx);
  const pending = backups?.transfer?.pending;
  if (pending)
    impl.finishExport = async (req) => {
      checkJobId(req.jobId);
      let outcome: ExportOutcome;
      if (req.manifestJson) {
        try {
          outcome = { sealed: snapshotManifestSchema.parse(JSON.parse(req.manifestJson)) };
        } catch (err) {
          throw new CairnError("invalid-argument", "manifest_json is not a snapshot manifest", {
            cause: err,
          });
        }
      } else outcome = { failed: req.reason || "the reader gave up" };
      return { found: pending.finish(req.jobId, outcome) };
    };
  const reader = deps.reader;
  if (reader) impl.readExport = (req, ctx: CallContext) => readExportRpc(reader, req, ctx);
  const maintenance: MaintenanceRpcDeps | undefined =
    deps.maintenance ??
    (backups && {
      jobs: backups.jobs,
      openRepository: (location, signal) => backups.openRepository(location, signal),
    });
  if (maintenance) {
    impl.runMaintenance = (req, ctx: CallContext) => runMaintenanceRpc(maintenance, req, ctx);
    // A disk restore needs only the repository and the destination: every role serves it.
    impl.restoreDisk = (req, ctx: CallContext) => restoreDiskRpc(maintenance, req, ctx);
    const vm = hypervisor && deps.restoreVm;
    if (vm) {
      const vmDeps: RestoreVmRpcDeps = {
        ...vm,
        jobs: maintenance.jobs,
        openRepository: maintenance.openRepository,
      };
      impl.restoreVm = (req, ctx: CallContext) => restoreVmRpc(vmDeps, req, ctx);
    }
    impl.abortJob = async (req) => {
      checkJobId(req.jobId);
      // Answers once the job's cleanup ran (or after 8 s: inside the coordinator's 10 s deadline).
      const r = await maintenance.jobs.abortAndWait(req.jobId, req.reason || "aborted by request", 8_000);
      return { found: r.found };
    };
  }
  if (reach) impl.probeRepositories = (req, ctx: CallContext) => probeRepositoriesRpc(reach, req, ctx);
  return withUnimplemented<AgentServiceImplementation>(Definition, impl, CAIRN_VERSION);
}

export type { AgentServiceDefinition };
