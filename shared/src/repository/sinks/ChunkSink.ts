import type { ChunkLocation } from "../packs/PackIndex.js";

/**
 * Where one backup's new chunks are stored: the restore-point writer's port to the repository's
 * chunk storage, one adapter per layout — LooseChunkSink (format version 1, one object per chunk)
 * and PackChunkSink (version 2, packs, format §6a). The writer owns one per backup.
 *
 * Contract (checked for every adapter by test/support/chunkSinkContract.ts):
 * - `has(id)` resolves true only for a chunk that is stored: in a sealed snapshot's storage, or put
 *   through this sink. It may resolve false for a stored chunk when asking would cost more than
 *   storing it again (LooseChunkSink while nearly every chunk is new): chunks are
 *   content-addressed, so a second put of one is harmless.
 * - `put(id, framed)` stores a chunk's frame (format §5), staged; it resolves false when it found
 *   the chunk stored already (it was stored again), else true. It resolves once `framed` may be
 *   reused (ObjectStore.put's rule); from then on this backup can read the chunk (`placeOf`), and
 *   everyone can once `flush()` and the store's commitStaged() resolved.
 * - `placeOf(id)`: where this backup reads back a chunk it put; undefined when the repository
 *   finds it by itself.
 * - `flush()` writes what is still queued and whatever makes the chunks findable (a pack index),
 *   staged, and rejects with the first failure of any put so far.
 * - `sealed()` is told that the manifest naming these chunks is stored.
 * - `settle()` waits until no put is in flight and stores nothing more (a backup giving up, before
 *   discardStaged); it never rejects with a put's failure.
 * - Every async op honours its AbortSignal and rejects with CairnError("aborted").
 */
export interface ChunkSink {
  has(id: string, signal: AbortSignal | undefined): Promise<boolean>;
  put(id: string, framed: Uint8Array, signal: AbortSignal | undefined): Promise<boolean>;
  placeOf(id: string): ChunkLocation | undefined;
  flush(signal: AbortSignal | undefined): Promise<void>;
  sealed(): void;
  settle(signal: AbortSignal | undefined): Promise<void>;
}
