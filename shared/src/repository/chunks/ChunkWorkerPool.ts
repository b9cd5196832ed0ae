import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { CairnError, type CairnErrorCode } from "../../errors/CairnError.js";
import type { RepositoryKeys } from "../crypto/RepositoryKeys.js";
import type { ObjectKind } from "./codec.js";
import { alignedSharedMemory, SharedChunk } from "./SharedChunk.js";
import type { HashSharedRequest, WorkerMessage, WorkerReply, WorkerRequest } from "./workerProtocol.js";

type Pending = { resolve: (r: Extract<WorkerReply, { ok: true }>) => void; reject: (e: unknown) => void };

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/**
 * A fixed pool of worker threads for hashing, compression and encryption. Callers hand over
 * buffers (they are transferred: the caller must not touch them afterwards, and gets them back
 * in the result). Work goes to the least-busy worker; workers are unref'd while idle so an
 * unclosed pool never keeps the process alive.
 */
export class ChunkWorkerPool {
  private readonly slots: Slot[] = [];
  /** Worker threads in the pool. */
  get size(): number {
    return this.slots.length;
  }
  private seq = 0;
  private closed = false;
  private nextSid = 1;
  /** Released shared buffers by length, reused by acquireShared. */
  private readonly freeShared = new Map<number, SharedChunk[]>();
  /** A shared buffer dropped without release() (a failed backup): its slot goes back to the free list. */
  private readonly lostShared = new FinalizationRegistry<{
    sid: number;
    memory: SharedArrayBuffer;
    offset: number;
    length: number;
  }>((slot) => {
    if (!this.closed) this.pushFree(new SharedChunk(slot.sid, slot.memory, slot.offset, slot.length));
  });

  /** Shared chunk buffers are made in slabs of about this many bytes (one WebAssembly.Memory each). */
  static readonly SLAB_BYTES = 4 * 1024 * 1024;

  constructor(keys: RepositoryKeys | undefined, level: number, size = Math.max(1, availableParallelism())) {
    for (let i = 0; i < size; i++) {
      const [entry, how] = workerEntry();
      const worker = new Worker(entry, {
        ...how,
        workerData: { dataKey: keys?.dataKey ?? null, idKey: keys?.idKey ?? null, level },
      });
      const slot: Slot = { worker, pending: new Map() };
      const settle = (reply: WorkerReply) => {
        const p = slot.pending.get(reply.seq);
        if (!p) return;
        slot.pending.delete(reply.seq);
        if (reply.ok) p.resolve(reply);
        else
          p.reject(
            new CairnError(
              (reply.error.code as CairnErrorCode | undefined) ?? "internal",
              reply.error.message,
              {
                hint: reply.error.hint,
              },
            ),
          );
      };
      worker.on("message", (message: WorkerMessage) => {
        if ("batch" in message) for (const reply of message.batch) settle(reply);
        else settle(message);
        if (slot.pending.size === 0) worker.unref();
      });
      const fail = (e: unknown) => {
        for (const p of slot.pending.values())
          p.reject(new CairnError("internal", "a chunk worker thread failed", { cause: e }));
        slot.pending.clear();
      };
      worker.on("error", fail);
      worker.on("exit", (code) => fail(new Error(`worker exited with code ${code}`)));
      worker.unref();
      this.slots.push(slot);
    }
  }

  private run(
    req: Extract<WorkerRequest, { seq: number }>,
    transfer: ArrayBuffer[],
  ): Promise<Extract<WorkerReply, { ok: true }>> {
    if (this.closed)
      return Promise.reject(new CairnError("failed-precondition", "the repository was closed"));
    const slot = this.leastBusy();
    return new Promise((resolve, reject) => {
      slot.pending.set(req.seq, { resolve, reject });
      slot.worker.ref();
      slot.worker.postMessage(req, transfer);
    });
  }

  private leastBusy(): Slot {
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    return slot;
  }

  /** hashShared requests made in this turn of the event loop, posted together by flushShared(). */
  private queuedShared: { req: HashSharedRequest; pending: Pending }[] = [];
  private flushScheduled = false;

  /**
   * Shared-buffer requests move no bytes, so a message costs more than its work is worth sharing:
   * ~55 µs of the two threads' time per 256 KiB chunk, a quarter of hashing it. Those made in one
   * turn (a 1 MiB NBD read completes four chunks) go to a worker as one message.
   */
  private runShared(req: HashSharedRequest): Promise<Extract<WorkerReply, { ok: true }>> {
    if (this.closed)
      return Promise.reject(new CairnError("failed-precondition", "the repository was closed"));
    return new Promise((resolve, reject) => {
      this.queuedShared.push({ req, pending: { resolve, reject } });
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      setImmediate(() => this.flushShared());
    });
  }

  private flushShared(): void {
    this.flushScheduled = false;
    const queued = this.queuedShared;
    this.queuedShared = [];
    if (this.closed) {
      for (const q of queued)
        q.pending.reject(new CairnError("failed-precondition", "the repository was closed"));
      return;
    }
    // At most MAX_BATCH per message, so a large turn still spreads over every worker.
    for (let i = 0; i < queued.length; i += ChunkWorkerPool.MAX_BATCH) {
      const part = queued.slice(i, i + ChunkWorkerPool.MAX_BATCH);
      const slot = this.leastBusy();
      for (const q of part) slot.pending.set(q.req.seq, q.pending);
      slot.worker.ref();
      slot.worker.postMessage(
        part.length === 1 ? part[0]!.req : { op: "batch", requests: part.map((q) => q.req) },
      );
    }
  }

  static readonly MAX_BATCH = 4;

  /** Hashes a chunk (or reports it all-zero). `data` must own its ArrayBuffer (it is transferred). */
  async hash(input: Uint8Array): Promise<{ id: string; zero: boolean; data: Buffer }> {
    const data = owned(input);
    const r = await this.run({ op: "hash", seq: this.seq++, data }, [data.buffer as ArrayBuffer]);
    return { id: r.id, zero: r.zero, data: toBuffer(r.data!) };
  }

  /** Compresses and encrypts; returns the framed object and the plaintext buffer back. */
  async frame(kind: ObjectKind, id: string, input: Uint8Array): Promise<{ framed: Buffer; data: Buffer }> {
    const data = owned(input);
    const r = await this.run({ op: "frame", seq: this.seq++, kind, id, data }, [data.buffer as ArrayBuffer]);
    return { framed: toBuffer(r.framed!), data: toBuffer(r.data!) };
  }

  /** Decrypts, decompresses and verifies the id; `what` names the object for error messages. */
  async unframe(kind: ObjectKind, id: string, framed: Uint8Array, what: string): Promise<Buffer> {
    const msg = owned(framed);
    const r = await this.run({ op: "unframe", seq: this.seq++, kind, id, data: msg, what }, [
      msg.buffer as ArrayBuffer,
    ]);
    return toBuffer(r.data!);
  }

  /**
   * A chunk buffer the workers read in place (no transfer, no copy). Its bytes are not zeroed.
   * Give it back with releaseShared() once nothing uses it (after the put of a frame made in place).
   */
  acquireShared(length: number): SharedChunk {
    const free = this.freeShared.get(length);
    if (!free?.length) this.addSlab(length);
    const c = this.freeShared.get(length)!.pop()!;
    this.lostShared.register(c, { sid: c.sid, memory: c.memory, offset: c.offset, length }, c);
    return c;
  }

  releaseShared(c: SharedChunk): void {
    if (this.closed) return;
    const list = this.freeShared.get(c.plain.length);
    if (list?.includes(c)) throw new CairnError("internal", `shared chunk buffer ${c.sid} released twice`);
    this.lostShared.unregister(c);
    this.pushFree(c);
  }

  private pushFree(c: SharedChunk): void {
    const list = this.freeShared.get(c.plain.length) ?? [];
    list.push(c);
    this.freeShared.set(c.plain.length, list);
  }

  /**
   * A slab of page-aligned shared chunk buffers, registered with every worker. Slabs live as long as
   * the pool: their number follows the most chunks ever in use at once (DiskWriter bounds that).
   */
  private addSlab(length: number): void {
    const stride = SharedChunk.strideFor(length);
    const count = Math.max(1, Math.floor(ChunkWorkerPool.SLAB_BYTES / stride));
    const memory = alignedSharedMemory(stride * count);
    for (let k = 0; k < count; k++) {
      const c = new SharedChunk(this.nextSid++, memory, k * stride, length);
      for (const s of this.slots)
        s.worker.postMessage({ op: "register", sid: c.sid, memory, offset: c.offset, length });
      this.pushFree(c);
    }
  }

  /** hash() of a shared chunk's plaintext. */
  async hashShared(c: SharedChunk): Promise<{ id: string; zero: boolean }> {
    const r = await this.runShared({ op: "hashShared", seq: this.seq++, sid: c.sid, frame: false });
    return { id: r.id, zero: r.zero };
  }

  /**
   * Hashes a shared chunk and, unless it is all zeros, frames it, in one round trip (a chunk that is
   * probably new): `framed` is the frame (a view of c when framed in place: then keep c until the
   * frame is stored), absent for an all-zero chunk. With `id`, frames without
   * hashing; with `padTo`, a frame made in place is padded to that multiple (format §5).
   */
  async hashFrameShared(
    kind: ObjectKind,
    c: SharedChunk,
    opts: { id?: string | undefined; padTo?: number | undefined } = {},
  ): Promise<{ id: string; zero: boolean; framed: Buffer | undefined }> {
    const r = await this.runShared({
      op: "hashShared",
      seq: this.seq++,
      sid: c.sid,
      frame: kind,
      ...(opts.id === undefined ? {} : { id: opts.id }),
      ...(opts.padTo ? { padTo: opts.padTo } : {}),
    });
    const framed = r.inPlace ? c.frame(r.inPlace) : r.framed ? toBuffer(r.framed) : undefined;
    return { id: r.id, zero: r.zero, framed };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/**
 * Compiled: the .js worker. From TypeScript sources (tests, tsx) Node 20 cannot load a .ts worker
 * entry even with `--import tsx`, so a tiny eval'd bootstrap registers tsx first, then imports it.
 */
function workerEntry(): [string | URL, { eval?: boolean }] {
  if (!import.meta.url.endsWith(".ts")) return [new URL("./chunkWorker.js", import.meta.url), {}];
  const entry = new URL("./chunkWorker.ts", import.meta.url).href;
  const code = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return [code, { eval: true }];
}

/** Only whole ArrayBuffers may be transferred (a pooled Buffer shares one with others): copy otherwise. */
function owned(u: Uint8Array): Uint8Array {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u : new Uint8Array(u);
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
