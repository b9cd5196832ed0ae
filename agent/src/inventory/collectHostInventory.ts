import { hostname } from "node:os";
import si from "systeminformation";
import type { AgentRole, HostInventory } from "../../../shared/src/grpc/wire/hostInventory.js";
import type { RepositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import { CAIRN_VERSION } from "../../../shared/src/version.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";

/** What an agent says about its part in transfers (docs/transfer-paths.md §1, §2). */
export interface AgentRoleFacts {
  roles: AgentRole[];
  /** Where readers on other hosts reach this host's exports ("" none). */
  transferAddress: string;
  /** A mover appliance's hypervisor host ("" none). */
  applianceOf: string;
  /** What this host reached at its last probe. */
  repositories: RepositoryReach[];
}

/**
 * Facts about this host for the coordinator's registry. Without a hypervisor (a mover-only agent)
 * nothing asks libvirt: the versions and the libvirt URI are empty.
 */
export async function collectHostInventory(
  hypervisor: Hypervisor | undefined,
  config: { hostId: string; libvirtUri: string } & Partial<AgentRoleFacts>,
  signal: AbortSignal,
): Promise<HostInventory> {
  const [osInfo, cpu, mem, versions] = await Promise.all([
    si.osInfo(),
    si.cpu(),
    si.mem(),
    hypervisor ? hypervisor.versions(signal) : { libvirt: "", qemu: "" },
  ]);
  return {
    hostId: config.hostId,
    hostname: hostname(),
    os: `${osInfo.distro} ${osInfo.release}`.trim(),
    kernel: osInfo.kernel,
    cpuCount: cpu.cores,
    memoryBytes: mem.total,
    libvirtVersion: versions.libvirt,
    qemuVersion: versions.qemu,
    agentVersion: CAIRN_VERSION,
    libvirtUri: hypervisor ? config.libvirtUri : "",
    roles: config.roles ?? ["hypervisor"],
    repositories: config.repositories ?? [],
    transferAddress: config.transferAddress ?? "",
    applianceOf: config.applianceOf ?? "",
  };
}
