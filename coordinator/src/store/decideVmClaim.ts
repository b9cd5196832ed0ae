/** A pending claim on a VM by a host that reported it running while its owner still did. */
export interface VmClaim {
  hostId: string;
  atMs: number;
}

export interface VmClaimVerdict {
  /**
   * owner: the report is the owner's own. take: ownership moves to the reporter. contest: the
   * reporter runs it while the owner (online) still does; the owner keeps it, the claim waits.
   * withdraw: the reporter no longer runs a VM it claimed. ignore: nothing changes.
   */
  verdict: "owner" | "take" | "contest" | "withdraw" | "ignore";
  reason: string;
}

/**
 * Who owns a VM after one host's report of it (Store contract: a VM is owned by the host where it
 * runs). A host that reports running a VM that runs on another, online host does not take it: two
 * hosts claiming one running VM is either a migration in flight (the source stops it in a moment)
 * or a host lying, and the owner keeps it until it no longer runs there or goes offline
 * (docs/architecture.md "Identity").
 */
export function decideVmClaim(
  owner: { hostId: string; state: string; present: boolean; stateMs?: number; claim?: VmClaim },
  report: { hostId: string; state: string; present: boolean; atMs: number },
  ownerOnline: boolean,
): VmClaimVerdict {
  if (owner.hostId === report.hostId) return { verdict: "owner", reason: "the owner's own report" };
  const claimed = owner.claim?.hostId === report.hostId;
  if (!report.present)
    return claimed
      ? { verdict: "withdraw", reason: `${report.hostId} no longer has it` }
      : { verdict: "ignore", reason: `gone from ${report.hostId}, which does not own it` };
  if (!owner.present)
    return { verdict: "take", reason: `it is on ${report.hostId} and gone from ${owner.hostId}` };
  if (report.state !== "running")
    return claimed
      ? { verdict: "withdraw", reason: `${report.hostId} no longer runs it` }
      : { verdict: "ignore", reason: `an inactive definition on ${report.hostId} never takes a VM` };
  if (report.atMs < (owner.stateMs ?? 0))
    return {
      verdict: "ignore",
      reason: `the report from ${report.hostId} is older than the owner's last change`,
    };
  if (owner.state !== "running")
    return { verdict: "take", reason: `it runs on ${report.hostId} and not on ${owner.hostId}` };
  if (!ownerOnline)
    return { verdict: "take", reason: `it runs on ${report.hostId} and ${owner.hostId} is offline` };
  return {
    verdict: "contest",
    reason: `${report.hostId} reports it running while ${owner.hostId}, online, still runs it: ${owner.hostId} keeps it until it stops running there or goes offline`,
  };
}
