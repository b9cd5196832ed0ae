import type { RepositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import type { ObjectStore } from "../../../shared/src/repository/ports/ObjectStore.js";
import { type LocationProbe, probeLocation } from "./probeLocation.js";

/** A repository the coordinator asks about: its name there and its registered location. */
export interface ProbeTarget {
  name: string;
  location: string;
}

export interface ProbeRepositoriesOptions {
  hostId: string;
  /** This host's own access paths to repositories (the agent config's `repositories`). */
  extraLocations: readonly string[];
  /** Opens a location's object store (no repository, no passphrase). */
  openStore(location: string): ObjectStore;
  /** Bytes each probe writes and reads back. */
  probeBytes: number;
  /** Per location: a probe still running after this is unreachable with that reason. */
  timeoutMs?: number;
  /** Locations probed at once. */
  concurrency?: number;
  signal: AbortSignal;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 60_000;
export const DEFAULT_PROBE_CONCURRENCY = 4;

/**
 * Probes every requested target and every extra location of this host (docs/transfer-paths.md §2),
 * a few at a time, each bounded in time. A location asked twice (a target also listed as extra) is
 * probed once. Results keep the request's order, targets first; a target's result carries its
 * name, and so does an extra location whose repository has the same id as a target's: another
 * access path to that repository.
 */
export async function probeRepositories(
  targets: readonly ProbeTarget[],
  opts: ProbeRepositoriesOptions,
): Promise<RepositoryReach[]> {
  const named = new Map<string, string>();
  for (const t of targets) if (!named.has(t.location)) named.set(t.location, t.name);
  const locations = [...new Set([...targets.map((t) => t.location), ...opts.extraLocations])];
  const probes = await mapLimited(locations, opts.concurrency ?? DEFAULT_PROBE_CONCURRENCY, (location) =>
    probeLocation(location, opts.openStore, {
      hostId: opts.hostId,
      bytes: opts.probeBytes,
      timeoutMs: opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
      signal: opts.signal,
    }),
  );
  // A repository's name by its id, learned from the targets that were opened.
  const nameById = new Map<string, string>();
  for (const p of probes) {
    const name = named.get(p.location);
    if (name !== undefined && p.repositoryId && !nameById.has(p.repositoryId))
      nameById.set(p.repositoryId, name);
  }
  return probes.map((p) => toReach(p, named.get(p.location) ?? nameById.get(p.repositoryId) ?? ""));
}

function toReach(p: LocationProbe, name: string): RepositoryReach {
  return { ...p, name, hostId: "" };
}

/** `fn` over `items` with at most `limit` running at once; results in the items' order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return out;
}
