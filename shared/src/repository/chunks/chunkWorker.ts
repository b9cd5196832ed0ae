/**
 * Worker thread body for ChunkWorkerPool: hashing, zero detection, zstd and AES-GCM are CPU-bound
 * and zstd-napi is synchronous, so they run here, off the event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { RepositoryKeys } from "../crypto/RepositoryKeys.js";
import { contentId, FRAME_HEADER_BYTES, frame, frameInPlace, isAllZero, unframe } from "./codec.js";
import type { WorkerMessage, WorkerReply, WorkerRequest } from "./workerProtocol.js";

const init = workerData as { dataKey: Uint8Array | null; idKey: Uint8Array | null; level: number };
const keys: RepositoryKeys | undefined =
  init.dataKey && init.idKey
    ? { dataKey: Buffer.from(init.dataKey), idKey: Buffer.from(init.idKey) }
    : undefined;

/** Registered shared chunk buffers: header room, then the plaintext (see SharedChunk). */
const shared = new Map<number, Buffer>();

/** Requests that get a reply: all but "register". */
type Answered = Exclude<WorkerRequest, { op: "register" }>;

function handle(req: Answered): { reply: WorkerMessage; transfer: ArrayBuffer[] } {
  if (req.op === "batch") {
    const batch: WorkerReply[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const r of req.requests) {
      const one = handleOne(r);
      batch.push(one.reply);
      transfer.push(...one.transfer);
    }
    return { reply: { batch }, transfer };
  }
  return handleOne(req);
}

function handleOne(req: Exclude<Answered, { op: "batch" }>): {
  reply: WorkerReply;
  transfer: ArrayBuffer[];
} {
  try {
    switch (req.op) {
      case "hashShared": {
        const buf = shared.get(req.sid);
        if (!buf) throw new Error(`shared chunk buffer ${req.sid} is not registered`);
        const plain = buf.subarray(FRAME_HEADER_BYTES);
        const zero = req.id === undefined && isAllZero(plain);
        const id = req.id ?? (zero ? "" : contentId(plain, keys));
        if (zero || req.frame === false) return { reply: { seq: req.seq, ok: true, id, zero }, transfer: [] };
        const framed = frameInPlace(req.frame, id, buf, keys, init.level, req.padTo ?? 0);
        if (typeof framed === "number")
          return { reply: { seq: req.seq, ok: true, id, zero, inPlace: framed }, transfer: [] };
        const out = owned(framed);
        return {
          reply: { seq: req.seq, ok: true, id, zero, framed: out },
          transfer: [out.buffer as ArrayBuffer],
        };
      }
      case "hash": {
        const zero = isAllZero(req.data);
        const id = zero ? "" : contentId(req.data, keys);
        return {
          reply: { seq: req.seq, ok: true, id, zero, data: req.data },
          transfer: [req.data.buffer as ArrayBuffer],
        };
      }
      case "frame": {
        const out = owned(frame(req.kind, req.id, req.data, keys, init.level));
        return {
          reply: { seq: req.seq, ok: true, id: req.id, zero: false, data: req.data, framed: out },
          transfer: [req.data.buffer as ArrayBuffer, out.buffer as ArrayBuffer],
        };
      }
      case "unframe": {
        const plain = owned(unframe(req.kind, req.id, req.data, keys, req.what));
        return {
          reply: { seq: req.seq, ok: true, id: req.id, zero: false, data: plain },
          transfer: [plain.buffer as ArrayBuffer],
        };
      }
    }
  } catch (e) {
    const err = e as Error & { code?: string; hint?: string };
    return {
      reply: {
        seq: "seq" in req ? req.seq : -1,
        ok: false,
        error: { message: err.message, code: err.code, hint: err.hint },
      },
      transfer: [],
    };
  }
}

/**
 * Replies transfer their buffers instead of copying them; only a buffer that owns its whole
 * ArrayBuffer can be transferred (pooled or sliced ones are copied once into a fresh one).
 */
function owned(u: Uint8Array): Uint8Array {
  if (u.byteOffset === 0 && u.byteLength === u.buffer.byteLength) return u;
  const c = new Uint8Array(u.byteLength);
  c.set(u);
  return c;
}

parentPort?.on("message", (req: WorkerRequest) => {
  if (req.op === "register") {
    // No reply: a buffer that failed to register fails its first request ("is not registered").
    try {
      shared.set(req.sid, Buffer.from(req.memory, req.offset, FRAME_HEADER_BYTES + req.length));
    } catch {}
    return;
  }
  const r = handle(req);
  parentPort?.postMessage(r.reply, r.transfer);
});
