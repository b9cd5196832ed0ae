import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { AgentServiceImplementation } from "../../../shared/src/gen/cairn/v1/agent.js";

/** The refusal every hypervisor RPC gives on a mover-only agent (docs/transfer-paths.md §1). */
export function noHypervisorRole(): CairnError {
  return new CairnError("failed-precondition", "this agent has no hypervisor role", {
    hint: "ask the agent on the VM's host; add hypervisor to roles in this agent's config if it runs VMs",
  });
}

/**
 * The RPCs that need libvirt, as a mover-only agent answers them: failed-precondition, with no
 * virsh started. ListDomains answers an empty list (this host runs no VMs Cairn backs up).
 */
export function withoutHypervisorRpcs(): Pick<
  AgentServiceImplementation,
  "listDomains" | "describeChain" | "redefineCheckpoints" | "forgetCheckpoints" | "runBackup"
> {
  const refuse = async (): Promise<never> => {
    throw noHypervisorRole();
  };
  return {
    listDomains: async () => ({ domains: [] }),
    describeChain: refuse,
    redefineCheckpoints: refuse,
    forgetCheckpoints: refuse,
    // biome-ignore lint/correctness/useYield: refuses before yielding, by design
    runBackup: async function* () {
      throw noHypervisorRole();
    },
  };
}
