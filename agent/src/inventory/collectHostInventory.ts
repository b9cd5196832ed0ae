import { hostname } from "node:os";
import si from "systeminformation";
import type { HostInventory } from "../../../shared/src/grpc/wire/hostInventory.js";
import { CAIRN_VERSION } from "../../../shared/src/version.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";

/** Facts about this host for the coordinator's registry. */
export async function collectHostInventory(
  hypervisor: Hypervisor,
  config: { hostId: string; libvirtUri: string },
  signal: AbortSignal,
): Promise<HostInventory> {
  const [osInfo, cpu, mem, versions] = await Promise.all([
    si.osInfo(),
    si.cpu(),
    si.mem(),
    hypervisor.versions(signal),
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
    libvirtUri: config.libvirtUri,
  };
}
