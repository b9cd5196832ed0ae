import type { ObjectKind } from "./codec.js";

/** Messages between ChunkWorkerPool and chunkWorker. Buffers are transferred, not copied. */
export type WorkerRequest =
  | { op: "hash"; seq: number; data: Uint8Array }
  | { op: "frame"; seq: number; kind: ObjectKind; id: string; data: Uint8Array }
  | { op: "unframe"; seq: number; kind: ObjectKind; id: string; data: Uint8Array; what: string }
  /**
   * Shared chunk buffers (SharedChunk): registered once, then named by `sid`. A request moves no
   * buffer, so a backup makes no per-chunk ArrayBuffers (whose churn drove V8's major GCs).
   */
  | { op: "register"; sid: number; memory: SharedArrayBuffer; offset: number; length: number }
  /** Hash a shared chunk and, with `frame`, unless it is all zeros also frame it: one round trip. */
  | HashSharedRequest
  /** Several hashShared requests in one message (those made in one turn of the event loop). */
  | { op: "batch"; requests: HashSharedRequest[] };

export interface HashSharedRequest {
  op: "hashShared";
  seq: number;
  sid: number;
  frame: false | ObjectKind;
  id?: string;
  padTo?: number;
}

/** What a worker posts: one reply, or the replies to a batch in its order. */
export type WorkerMessage = WorkerReply | { batch: WorkerReply[] };

export type WorkerReply =
  | {
      seq: number;
      ok: true;
      id: string;
      zero: boolean;
      /** The buffer handed over (absent for shared-buffer requests). */
      data?: Uint8Array;
      /** A new framed buffer; absent for a shared buffer framed in place (see frameInPlace). */
      framed?: Uint8Array;
      /** Shared-buffer requests: the shared buffer now holds the frame, this long (see frameInPlace). */
      inPlace?: number;
    }
  | {
      seq: number;
      ok: false;
      error: { message: string; code: string | undefined; hint: string | undefined };
    };
