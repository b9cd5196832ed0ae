import { availableParallelism } from "node:os";
import { BandwidthLimitedObjectStore } from "../repository/decorators/BandwidthLimitedObjectStore.js";
import { Repository } from "../repository/Repository.js";
import { openRepositoryStore, type RepositoryLocationEnv } from "./openRepositoryStore.js";

/**
 * Chunk worker threads (hashing, zstd, encryption) for backups and restores: one core fewer than
 * the host has. The event loop that reads NBD and submits the writes, and QEMU serving the export,
 * need a core too. On a 2-core lab host one worker instead of two made a 2 GiB full of random data
 * ~15% faster with 1.0-1.4 CPU-s less (10 of 12 alternating pairs), and a ~50% compressible one no
 * slower (3 of 4 pairs faster): a second worker mostly took CPU from them.
 */
export function defaultChunkWorkers(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

/** How a process opens repositories: the agent's config (daemon and local CLI alike), a passphrase. */
export interface RepositorySettings {
  /** Chunk worker threads per repository opened (default: defaultChunkWorkers()). */
  chunkWorkers?: number | undefined;
  /** Free space writes leave on a local repository (undefined: the store's default). */
  localReserveBytes?: number | undefined;
  passphrase?: string | undefined;
  /** Where S3 credentials and endpoint come from (default: process.env). */
  env?: RepositoryLocationEnv | undefined;
}

/**
 * The one way Cairn opens a repository: the location's store (local path or s3://) with the
 * settings' local options, behind a bandwidth limit when one is asked for (bytes/s, 0 = none).
 */
export function openRepository(
  location: string,
  settings: RepositorySettings,
  signal: AbortSignal,
  opts: { bandwidthBytesPerSecond?: number } = {},
): Promise<Repository> {
  const reserve = settings.localReserveBytes;
  const store = openRepositoryStore(
    location,
    settings.env ?? process.env,
    reserve === undefined ? {} : { reserveBytes: reserve },
  );
  const bw = opts.bandwidthBytesPerSecond ?? 0;
  return Repository.open(bw > 0 ? new BandwidthLimitedObjectStore(store, bw) : store, {
    ...(settings.passphrase ? { passphrase: settings.passphrase } : {}),
    workers: settings.chunkWorkers ?? defaultChunkWorkers(),
    signal,
  });
}
