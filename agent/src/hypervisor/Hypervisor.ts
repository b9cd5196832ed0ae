import type { DomainInfo } from "./DomainInfo.js";

/**
 * Port: the host's hypervisor as the agent sees it.
 *
 * Contract:
 * - Every method takes an AbortSignal and gives up with CairnError("aborted") when it fires.
 * - Failures are CairnError: "unavailable" when the hypervisor cannot be reached (retryable),
 *   "not-found" for an unknown domain, "failed-precondition" when the domain's state forbids it.
 * - Results are snapshots of the moment; nothing is cached across calls.
 *
 * Checkpoint, backup-job and event methods arrive with the agent's backup path.
 */
export interface Hypervisor {
  /** libvirt and QEMU versions, e.g. { libvirt: "9.0.0", qemu: "7.2.0" }. */
  versions(signal: AbortSignal): Promise<{ libvirt: string; qemu: string }>;
  /** Every domain libvirt knows, running or not, with its disks. */
  listDomains(signal: AbortSignal): Promise<DomainInfo[]>;
}
