import type { RepositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import type { ObjectStore } from "../../../shared/src/repository/ports/ObjectStore.js";
import { type ProbeTarget, probeRepositories } from "./probeRepositories.js";

export interface ReachKeeperConfig {
  hostId: string;
  /** The agent config's `repositories`: probed at every request besides the requested ones. */
  extraLocations: readonly string[];
  probeBytes: number;
  openStore(location: string): ObjectStore;
  timeoutMs?: number;
  concurrency?: number;
}

/**
 * The agent's repository reach (docs/transfer-paths.md §2): runs probes when asked and keeps the
 * newest result per location, which the host inventory reports. Results of a location no longer
 * asked about stay until it is probed again or the agent restarts.
 */
export class ReachKeeper {
  private readonly newest = new Map<string, RepositoryReach>();

  constructor(private readonly config: ReachKeeperConfig) {}

  /** Probes the targets and this host's extra locations; remembers and returns the results. */
  async probe(targets: readonly ProbeTarget[], signal: AbortSignal): Promise<RepositoryReach[]> {
    const reach = await probeRepositories(targets, { ...this.config, signal });
    for (const r of reach) {
      // A location probed without a name (an extra one whose repository was not asked about this
      // time) keeps the name an earlier request gave it.
      const before = this.newest.get(r.location);
      const keep =
        !r.name && before?.name && before.repositoryId && before.repositoryId === r.repositoryId
          ? before.name
          : r.name;
      this.newest.set(r.location, { ...r, name: keep });
    }
    return reach;
  }

  /** The newest result per location, oldest location first. */
  latest(): RepositoryReach[] {
    return [...this.newest.values()].map((r) => ({ ...r }));
  }
}
