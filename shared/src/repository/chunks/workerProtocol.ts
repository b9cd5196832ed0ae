import type { ObjectKind } from "./codec.js";

/** Messages between ChunkWorkerPool and chunkWorker. Buffers are transferred, not copied. */
export type WorkerRequest =
  | { op: "hash"; seq: number; data: Uint8Array }
  /** Hash, and unless the chunk is all zeros also frame it: one round trip for a chunk that is likely new. */
  | { op: "hashFrame"; seq: number; kind: ObjectKind; data: Uint8Array }
  | { op: "frame"; seq: number; kind: ObjectKind; id: string; data: Uint8Array }
  | { op: "unframe"; seq: number; kind: ObjectKind; id: string; data: Uint8Array; what: string };

export type WorkerReply =
  | { seq: number; ok: true; id: string; zero: boolean; data: Uint8Array; framed?: Uint8Array }
  | {
      seq: number;
      ok: false;
      error: { message: string; code: string | undefined; hint: string | undefined };
    };
