import { availableParallelism } from "node:os";
import { BandwidthLimitedObjectStore } from "../../shared/src/repository/decorators/BandwidthLimitedObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";
import type { AgentConfig } from "./config/AgentConfig.js";

/**
 * Chunk worker threads (hashing, zstd, encryption) for the agent's backups and restores: one core
 * fewer than the host has. The event loop that reads NBD and submits the writes, and QEMU serving
 * the export, need a core too. On this 2-core lab host one worker instead of two made a 2 GiB full
 * of random data ~15% faster with 1.0-1.4 CPU-s less (10 of 12 alternating pairs), and a ~50%
 * compressible one no slower (3 of 4 pairs faster): a second worker mostly took CPU from them.
 */
export function defaultChunkWorkers(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

export interface AgentRepositorySettings {
  /** Chunk worker threads per repository opened (default: defaultChunkWorkers()). */
  chunkWorkers?: number | undefined;
  /** From the agent config: free space backups leave on a local repository (undefined: default). */
  localReserveBytes?: number | undefined;
  passphrase?: string | undefined;
}

/** Settings from the agent's config file that apply to every repository the agent opens. */
export function agentRepositorySettings(
  config: Pick<AgentConfig, "localRepositoryReserveBytes" | "chunkWorkers">,
  passphrase: string | undefined,
): AgentRepositorySettings {
  return {
    localReserveBytes: config.localRepositoryReserveBytes,
    chunkWorkers: config.chunkWorkers,
    passphrase,
  };
}

/**
 * Opens a repository a job names, as the agent does: the location's store with the agent's local
 * settings, behind the job's bandwidth limit when it has one.
 */
export function openAgentRepository(
  location: string,
  settings: AgentRepositorySettings,
  signal: AbortSignal,
  opts?: { bandwidthBytesPerSecond?: number },
): Promise<Repository> {
  const reserve = settings.localReserveBytes;
  const store = openRepositoryStore(
    location,
    process.env,
    reserve === undefined ? {} : { reserveBytes: reserve },
  );
  const bw = opts?.bandwidthBytesPerSecond ?? 0;
  return Repository.open(bw > 0 ? new BandwidthLimitedObjectStore(store, bw) : store, {
    ...(settings.passphrase ? { passphrase: settings.passphrase } : {}),
    workers: settings.chunkWorkers ?? defaultChunkWorkers(),
    signal,
  });
}
