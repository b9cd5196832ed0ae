import type { DomainPowerState } from "../hypervisor/DomainInfo.js";
import type { Hypervisor, LiveBitmap } from "../hypervisor/Hypervisor.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import { checkChainIds } from "./checkChainIds.js";

export interface ChainDescription {
  found: boolean;
  domainName: string;
  state: DomainPowerState;
  persistent: boolean;
  /** Oldest first. */
  checkpoints: CheckpointInfo[];
  /** The running QEMU's bitmaps per disk target; empty when the domain does not run. */
  bitmaps: Map<string, LiveBitmap[]>;
  /** "" none, "backup", "migration", or libvirt's operation name. */
  activeJob: string;
}

/** The checkpoint ledger's view of one domain on this host, as libvirt and QEMU have it now. */
export async function describeChain(
  hypervisor: Hypervisor,
  domainUuid: string,
  signal: AbortSignal,
): Promise<ChainDescription> {
  checkChainIds({ domainUuid });
  const d = await hypervisor.domain(domainUuid, signal);
  if (!d)
    return {
      found: false,
      domainName: "",
      state: "unknown",
      persistent: false,
      checkpoints: [],
      bitmaps: new Map(),
      activeJob: "",
    };
  const running = d.state === "running" || d.state === "paused";
  const [checkpoints, bitmaps, activeJob] = await Promise.all([
    hypervisor.listCheckpoints(d.uuid, signal),
    running ? hypervisor.liveBitmaps(d.uuid, signal) : new Map<string, LiveBitmap[]>(),
    hypervisor.activeJob(d.uuid, signal),
  ]);
  return {
    found: true,
    domainName: d.name,
    state: d.state,
    persistent: d.persistent,
    checkpoints,
    bitmaps,
    activeJob,
  };
}
