import type { ReachRecord } from "../store/records.js";
import { reachOf } from "../transfer/chooseTransferPath.js";

export interface RestoreHost {
  id: string;
  online: boolean;
  drained: boolean;
  roles: readonly string[];
}

export interface RestoreHostInput {
  /** The host the operator named ("" none). */
  requested: string;
  kind: "restore-disk" | "restore-vm";
  inPlace: boolean;
  /** The snapshot's VM as the inventory knows it (undefined: never seen by any agent). */
  vm: { name: string; hostId: string; present: boolean } | undefined;
  /** The host of the VM's newest succeeded backup job, if any. */
  lastBackupHost: string | undefined;
  repository: { name: string; location: string; id?: string | undefined };
  hosts: readonly RestoreHost[];
  reach: readonly ReachRecord[];
}

export type RestoreHostChoice =
  | { kind: "assign"; hostId: string; location: string; reason: string }
  | { kind: "fail"; hostId: string; reason: string };

/**
 * Where a restore job runs and how that host opens the repository (docs/restore.md §1): the host
 * asked for, else where the snapshot's VM is defined now, else the host of its last backup. That
 * host must be online, not drained, have libvirt for a whole VM, and have reached the repository
 * at its last probe (docs/transfer-paths.md §2); otherwise the job fails at once, naming the
 * repository and the hosts that reach it. An in-place restore runs where the VM is. Pure.
 */
export function chooseRestoreHost(input: RestoreHostInput): RestoreHostChoice {
  const { repository: repo, vm } = input;
  const byId = new Map(input.hosts.map((h) => [h.id, h]));
  const reachers = input.hosts
    .filter((h) => reachOf(input.reach, h.id, repo)?.reachable)
    .map((h) => `${h.id}${h.online ? (h.drained ? " (drained)" : "") : " (offline)"}`)
    .sort();
  const reachedBy = reachers.length
    ? `repository ${repo.name} is reached by ${reachers.join(", ")}`
    : `no host reaches repository ${repo.name}`;
  const fail = (hostId: string, reason: string): RestoreHostChoice => ({ kind: "fail", hostId, reason });

  let hostId: string;
  let why: string;
  if (input.inPlace) {
    if (!vm?.present)
      return fail(
        input.requested,
        `VM ${vm?.name ?? "of the snapshot"} is not defined on any host: an in-place restore needs the original domain`,
      );
    if (input.requested && input.requested !== vm.hostId)
      return fail(
        input.requested,
        `VM ${vm.name} is defined on ${vm.hostId}, not ${input.requested}: an in-place restore runs where it is`,
      );
    hostId = vm.hostId;
    why = `in place, where ${vm.name} is defined`;
  } else if (input.requested) {
    hostId = input.requested;
    why = "the host asked for";
  } else if (vm?.present && vm.hostId) {
    hostId = vm.hostId;
    why = `where ${vm.name} is defined`;
  } else if (input.lastBackupHost) {
    hostId = input.lastBackupHost;
    why = `the host of ${vm?.name ?? "the VM"}'s last backup`;
  } else
    return fail(
      "",
      `no host to restore on: the snapshot's VM is not defined anywhere and has no backup job on record; name one (--host); ${reachedBy}`,
    );

  const host = byId.get(hostId);
  if (!host) return fail(hostId, `host ${hostId} is not enrolled; ${reachedBy}`);
  if (!host.online) return fail(hostId, `host ${hostId} is offline; ${reachedBy}`);
  if (host.drained) return fail(hostId, `host ${hostId} is drained; ${reachedBy}`);
  if (input.kind === "restore-vm" && !host.roles.includes("hypervisor"))
    return fail(
      hostId,
      `host ${hostId} is not a hypervisor host (roles: ${host.roles.join(", ")}): it cannot define a domain`,
    );
  const own = reachOf(input.reach, hostId, repo);
  if (!own)
    return fail(
      hostId,
      `host ${hostId} has not reported whether it reaches repository ${repo.name} yet; ${reachedBy}`,
    );
  if (!own.reachable)
    return fail(
      hostId,
      `host ${hostId} does not reach repository ${repo.name}${own.error ? ` (${own.error})` : ""}; ${reachedBy}`,
    );
  const location = own.location || repo.location;
  return {
    kind: "assign",
    hostId,
    location,
    reason: `${hostId} (${why}) reaches repository ${repo.name} at ${location}`,
  };
}
