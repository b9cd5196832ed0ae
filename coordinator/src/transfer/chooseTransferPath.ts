import type { Glob } from "../policy/Glob.js";
import type { ReachRecord, TransferDecisionRecord } from "../store/records.js";

export type TransferMode = "auto" | "lan-free" | "network";

/** A host as assignment sees it. */
export interface TransferHost {
  id: string;
  roles: readonly string[];
  online: boolean;
  drained: boolean;
  /** A mover appliance's hypervisor host ("" none). */
  applianceOf: string;
  /** Active jobs it runs as VM host or reads as mover. */
  running: number;
}

export interface TransferInput {
  vmHostId: string;
  repository: { name: string; location: string; id?: string | undefined };
  /** The policy's `transfer` (auto when the job has no policy). */
  mode: TransferMode;
  /** The policy's `movers` selector; both empty: every mover. */
  movers: { names: readonly string[]; globs: readonly Glob[] };
  /** The job's per-host concurrency limit, which a mover's reads count against too. */
  perHostLimit: number;
  hosts: readonly TransferHost[];
  /** Every host's stored probe reports. */
  reach: readonly ReachRecord[];
  /** The mover whose read failed the previous attempt: another one that qualifies goes first. */
  avoidReader?: string | undefined;
}

export type TransferChoice =
  | { kind: "assign"; decision: TransferDecisionRecord }
  | { kind: "wait"; reason: string }
  | { kind: "fail"; reason: string };

/** A host's newest report about this repository: by its id once known, else by name. */
export function reachOf(
  reach: readonly ReachRecord[],
  hostId: string,
  repo: TransferInput["repository"],
): ReachRecord | undefined {
  let best: ReachRecord | undefined;
  for (const r of reach) {
    if (r.hostId !== hostId) continue;
    const same = repo.id && r.repositoryId ? r.repositoryId === repo.id : r.name === repo.name;
    if (same && (!best || r.probedMs > best.probedMs)) best = r;
  }
  return best;
}

const speed = (r: ReachRecord) => `${Math.round(r.writeMiBs)} MiB/s`;

/**
 * How a backup job's data travels (docs/transfer-paths.md §3): lan-free when the VM's host reaches
 * the repository and the policy allows it, else through the best mover; waits while the VM host's
 * reach is unknown or every qualifying mover is busy; fails when no path exists. Pure.
 */
export function chooseTransferPath(input: TransferInput): TransferChoice {
  const { repository: repo, vmHostId } = input;
  const byId = new Map(input.hosts.map((h) => [h.id, h]));
  const vmHost = byId.get(vmHostId);
  const reachers = input.hosts
    .filter((h) => reachOf(input.reach, h.id, repo)?.reachable)
    .map((h) => h.id)
    .sort();
  const reachedBy = reachers.length ? `reached by ${reachers.join(", ")}` : "no host reaches it";
  if (vmHost && !vmHost.roles.includes("hypervisor"))
    return {
      kind: "fail",
      reason: `${vmHostId} is not a hypervisor host (roles: ${vmHost.roles.join(", ")})`,
    };

  const own = reachOf(input.reach, vmHostId, repo);
  if (input.mode !== "network") {
    if (!own)
      return {
        kind: "wait",
        reason: `waiting for ${vmHostId} to report whether it reaches repository ${repo.name}`,
      };
    if (own.reachable)
      return {
        kind: "assign",
        decision: {
          path: "lan-free",
          readerHostId: vmHostId,
          location: own.location || repo.location,
          reason: `lan-free: ${vmHostId} reaches repository ${repo.name} (${own.location || repo.location}, ${speed(own)})`,
        },
      };
    if (input.mode === "lan-free")
      return {
        kind: "fail",
        reason: `no path: policy asks for lan-free but ${vmHostId} does not reach repository ${repo.name}${own.error ? ` (${own.error})` : ""}; ${reachedBy}`,
      };
  }

  const names = new Set(input.movers.names);
  const { globs } = input.movers;
  const anyMover = names.size + globs.length === 0;
  const selected = (id: string) => anyMover || names.has(id) || globs.some((g) => g.test(id));
  const movers = input.hosts.filter((h) => h.id !== vmHostId && h.roles.includes("mover") && selected(h.id));
  const unreported = movers.filter((h) => h.online && !h.drained && !reachOf(input.reach, h.id, repo));
  const reaching = movers
    .map((h) => ({ h, r: reachOf(input.reach, h.id, repo) }))
    .filter((m): m is { h: TransferHost; r: ReachRecord } => Boolean(m.r?.reachable));
  const usable = reaching.filter((m) => m.h.online && !m.h.drained);
  const why =
    input.mode === "network"
      ? "policy asks for the network path"
      : `${vmHostId} cannot reach repository ${repo.name}${own?.error ? ` (${own.error})` : ""}`;
  if (!usable.length) {
    // A mover that just registered may reach it: wait for its probe rather than fail.
    if (unreported.length)
      return {
        kind: "wait",
        reason: `network path: waiting for ${unreported.map((h) => h.id).join(", ")} to report reach`,
      };
    const down = reaching.map((m) => `${m.h.id} (${m.h.online ? "drained" : "offline"})`);
    return {
      kind: "fail",
      reason: `no path to repository ${repo.name}: ${why}, and no ${anyMover ? "" : "selected "}online mover reaches it${down.length ? ` (${down.join(", ")})` : ""}; ${reachedBy}`,
    };
  }
  const free = usable.filter((m) => m.h.running < input.perHostLimit);
  if (!free.length)
    return {
      kind: "wait",
      reason: `network path: every mover that reaches repository ${repo.name} is at its concurrency limit (${usable.map((m) => m.h.id).join(", ")})`,
    };
  free.sort(
    (a, b) =>
      Number(a.h.id === input.avoidReader) - Number(b.h.id === input.avoidReader) ||
      a.h.running - b.h.running ||
      b.r.writeMiBs - a.r.writeMiBs ||
      Number(b.h.applianceOf === vmHostId) - Number(a.h.applianceOf === vmHostId) ||
      (a.h.id < b.h.id ? -1 : a.h.id > b.h.id ? 1 : 0),
  );
  const best = free[0] as { h: TransferHost; r: ReachRecord };
  return {
    kind: "assign",
    decision: {
      path: "network",
      readerHostId: best.h.id,
      location: best.r.location || repo.location,
      reason: `network via ${best.h.id}: ${why}; ${best.h.id} reaches it (${best.r.location || repo.location}, ${speed(best.r)})`,
    },
  };
}
