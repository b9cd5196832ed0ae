import type { DomainInfo, DomainPowerState } from "./DomainInfo.js";
import type { Hypervisor } from "./Hypervisor.js";
import { parseDomainXml } from "./parseDomainXml.js";
import { runVirsh } from "./runVirsh.js";

export interface VirshHypervisorConfig {
  /** libvirt connection URI, e.g. "qemu:///system" or "qemu+unix:///system?socket=…". */
  uri: string;
  /** Deadline for a single virsh call. */
  callTimeoutMs: number;
}

const STATES: Record<string, DomainPowerState> = {
  running: "running",
  idle: "blocked",
  blocked: "blocked",
  paused: "paused",
  "in shutdown": "shutdown",
  "shut off": "shutoff",
  crashed: "crashed",
  pmsuspended: "pmsuspended",
};

/** Hypervisor adapter over libvirt through the virsh CLI (the npm bindings lack checkpoints/backup). */
export class VirshHypervisor implements Hypervisor {
  constructor(private readonly config: VirshHypervisorConfig) {}

  private virsh(args: string[], signal: AbortSignal): Promise<string> {
    return runVirsh(args, { uri: this.config.uri, signal, timeoutMs: this.config.callTimeoutMs });
  }

  async versions(signal: AbortSignal): Promise<{ libvirt: string; qemu: string }> {
    const out = await this.virsh(["version"], signal);
    return {
      libvirt: /Using library: libvirt (\S+)/.exec(out)?.[1] ?? "",
      qemu: /Running hypervisor: QEMU (\S+)/.exec(out)?.[1] ?? "",
    };
  }

  async listDomains(signal: AbortSignal): Promise<DomainInfo[]> {
    const [all, transient] = await Promise.all([
      this.virsh(["list", "--all", "--uuid"], signal),
      this.virsh(["list", "--transient", "--uuid"], signal),
    ]);
    const transientSet = new Set(lines(transient));
    const result: DomainInfo[] = [];
    for (const uuid of lines(all)) {
      try {
        const [xml, state] = await Promise.all([
          this.virsh(["dumpxml", uuid], signal),
          this.virsh(["domstate", uuid], signal),
        ]);
        const parsed = parseDomainXml(xml);
        result.push({
          ...parsed,
          state: STATES[state.trim()] ?? "unknown",
          persistent: !transientSet.has(uuid),
        });
      } catch (err) {
        // A transient domain can vanish between list and dumpxml: that is not an error.
        if ((err as { code?: string }).code === "not-found") continue;
        throw err;
      }
    }
    return result;
  }
}

function lines(s: string): string[] {
  return s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}
