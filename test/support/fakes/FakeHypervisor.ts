import type { DomainInfo } from "../../../agent/src/hypervisor/DomainInfo.js";
import type { Hypervisor } from "../../../agent/src/hypervisor/Hypervisor.js";
import { abortError } from "../../../shared/src/errors/CairnError.js";

/** In-memory Hypervisor for unit tests of logic; passes the same contract suite as VirshHypervisor. */
export class FakeHypervisor implements Hypervisor {
  constructor(public domains: DomainInfo[] = []) {}

  async versions(signal: AbortSignal) {
    if (signal.aborted) throw abortError(signal, "versions");
    return { libvirt: "9.0.0", qemu: "7.2.0" };
  }

  async listDomains(signal: AbortSignal) {
    if (signal.aborted) throw abortError(signal, "listDomains");
    return structuredClone(this.domains);
  }
}

export const sampleDomain: DomainInfo = {
  uuid: "6f1c2b8e-3d47-4a51-9d0e-000000000001",
  name: "web-1",
  state: "running",
  persistent: true,
  disks: [
    { target: "vda", format: "qcow2", source: "/var/lib/libvirt/images/web-1.qcow2", device: "disk" },
    { target: "vdb", format: "raw", source: "/dev/vg0/web-1-data", device: "disk" },
  ],
  labels: { tier: "web" },
  hasGuestAgentChannel: true,
};
