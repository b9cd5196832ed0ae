import type { ChunkLocation, PackRecord } from "../packs/PackIndex.js";
import { PackWriter, type WrittenPackIndex } from "../packs/PackWriter.js";
import type { ObjectStore, PutOptions } from "../ports/ObjectStore.js";
import { throwIfAborted } from "../ports/throwIfAborted.js";
import type { ChunkSink } from "./ChunkSink.js";

/** What PackChunkSink needs of the repository (Repository has it). */
export interface PackedRepository {
  readonly store: ObjectStore;
  /** Where a chunk is, as far as the pack indexes read so far know. */
  locate(id: string): ChunkLocation | undefined;
  putPackIndex(records: readonly PackRecord[], options: PutOptions): Promise<string>;
  addPackRecords(indexId: string, records: readonly PackRecord[]): void;
}

/**
 * Chunks gathered into packs (format version 2, §6a) by a PackWriter: ~4 MiB O_DIRECT writes, a
 * pack closed after 25 ms without a new chunk. has() asks the pack indexes read at the backup's
 * start and this backup's own packs — no request per chunk. flush() writes the last pack and the
 * pack index for the packs no index covers yet; sealed() makes their entries known to the repository.
 */
export class PackChunkSink implements ChunkSink {
  private readonly packs: PackWriter;
  private written: WrittenPackIndex[] = [];

  constructor(
    private readonly repository: PackedRepository,
    /** discardStaged() owner of the packs and pack indexes (the backup). */
    owner: object,
    /** Tests make small packs and indexes; defaults: PackWriter's. */
    sizes?: { targetBytes?: number; packsPerIndex?: number },
  ) {
    this.packs = new PackWriter(
      repository.store,
      owner,
      (records, signal) => repository.putPackIndex(records, { signal, staged: true, owner }),
      sizes?.targetBytes,
      sizes?.packsPerIndex,
    );
  }

  async has(id: string, signal: AbortSignal | undefined): Promise<boolean> {
    throwIfAborted(signal, `checking chunk ${id}`);
    return this.repository.locate(id) !== undefined || this.packs.locate(id) !== undefined;
  }

  async put(id: string, framed: Uint8Array, signal: AbortSignal | undefined): Promise<boolean> {
    throwIfAborted(signal, `storing chunk ${id}`);
    await this.packs.add(id, framed, signal);
    return true;
  }

  placeOf(id: string): ChunkLocation | undefined {
    return this.packs.locate(id);
  }

  async flush(signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal, `storing packs in ${this.repository.store.location}`);
    this.written = await this.packs.finish(signal);
  }

  sealed(): void {
    for (const p of this.written) this.repository.addPackRecords(p.id, p.records);
  }

  async settle(signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal, `waiting for pack writes to ${this.repository.store.location}`);
    await this.packs.settle();
  }
}
