import { setMaxListeners } from "node:events";
import { abortError, CairnError, isCairnError } from "../errors/CairnError.js";
import { iterateSplit } from "./extents/splitExtents.js";
import type { NbdClient } from "./NbdClient.js";

/** Measured on the 2-core lab host (bench/nbd): 256 KiB × 16 in flight reads as fast as nbdcopy. */
export const DEFAULT_REQUEST_SIZE = 256 * 1024;
export const DEFAULT_DEPTH = 16;

export interface ReadExtentsOptions<T = unknown> {
  /**
   * Bytes per READ request; clamped to the server's maximum payload. Above `chunkSize`, one READ
   * covers several contiguous pieces and its payload is scattered into their buffers.
   */
  requestSize?: number;
  /** Requests in flight, or read and not yet taken by the consumer (each of one or more pieces). */
  depth?: number;
  /** Pieces never cross a multiple of this (the repository's chunk size). */
  chunkSize?: number;
  signal?: AbortSignal;
  /**
   * Recycle read buffers: each yielded `data` is then only valid until the consumer asks for the
   * next piece (copy it if you keep it). Removes per-read allocation — and with it most garbage
   * collection — which is what lets a null sink keep up with nbdcopy.
   */
  reuseBuffers?: boolean;
  /**
   * Supplies the buffer a read lands in (at least `length` bytes; the piece is its first `length`),
   * and an owner handed along with the piece: the consumer then owns that buffer and readExtents
   * never reuses it. The repository reads whole chunks straight into its chunk buffers this way,
   * instead of copying every byte once more. Undefined: readExtents' own buffer (reuseBuffers applies).
   */
  allocate?: (length: number) => { buffer: Buffer; owner: T } | undefined;
  /** Called after each piece is handed to the consumer with the running byte count. */
  onProgress?: (bytesRead: number) => void;
  /**
   * Grow the request size from `requestSize` while that raises throughput (default true): a
   * latency-bound source (network path, a slow array) gets fewer, larger requests.
   */
  adaptive?: boolean;
  /** Upper bound for adaptive growth (default 4 MiB, and never above the server's maximum). */
  maxRequestSize?: number;
}

export interface ExtentPiece<T = unknown> {
  offset: number;
  data: Buffer;
  /** What `allocate` returned with the buffer (undefined for readExtents' own buffers). */
  owner?: T | undefined;
}

/**
 * Reads the given ranges (e.g. the "data" extents of a backup plan) with a bounded window of
 * pipelined requests and yields the pieces in offset order. Back-pressure is the generator's:
 * at most `depth` requests are in flight or buffered ahead of the consumer.
 *
 * Failure: a dropped connection or timeout rethrows the transient CairnError with
 * `details.resumeFrom` — the offset of the first piece not yet yielded — so the caller can
 * reconnect and continue from there. Breaking out of the loop cancels outstanding requests.
 */
export async function* readExtents<T = unknown>(
  client: NbdClient,
  extents: Iterable<{ offset: number; length: number }>,
  options: ReadExtentsOptions<T> = {},
): AsyncGenerator<ExtentPiece<T>, void, undefined> {
  const requestSize = Math.max(1, Math.min(options.requestSize ?? DEFAULT_REQUEST_SIZE, client.maxPayload));
  const sizer = new RequestSizer(
    requestSize,
    Math.max(1, options.depth ?? DEFAULT_DEPTH),
    Math.min(client.maxPayload, Math.max(requestSize, options.maxRequestSize ?? MAX_ADAPTIVE_REQUEST_SIZE)),
    options.adaptive !== false,
  );
  const local = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, local.signal]) : local.signal;
  // Every in-flight read listens on this signal; depth can legitimately exceed the default 10.
  setMaxListeners(2 * Math.max(sizer.depth, MAX_ADAPTIVE_IN_FLIGHT / sizer.size) + 16, signal);
  const pieces = iterateSplit(extents, {
    maxLength: () => sizer.size,
    ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
  });
  const window: {
    offset: number;
    length: number;
    done: Promise<Buffer>;
    owner: T | undefined;
    /** The buffer is one of readExtents' own, recycled once the consumer moves on. */
    pooled: boolean;
    /** The last piece of its request (requests in the window are what `depth` bounds). */
    last: boolean;
  }[] = [];
  // With reuseBuffers: the buffers of the pieces in the window plus the one the consumer holds.
  const pool: Buffer[] = [];
  let held: Buffer | undefined;
  const reuse = options.reuseBuffers === true;
  let bytesRead = 0;
  let lastCompleted: number | undefined;
  let requests = 0;
  // Pieces never cross a chunk boundary, but when requests are larger than chunks, contiguous
  // pieces share one READ whose payload is scattered into their buffers: one request (a server
  // wake-up and a reply to parse) per request size, not per chunk. One piece of lookahead for it.
  let ahead: { offset: number; length: number } | undefined;
  const nextPiece = () => {
    if (ahead) {
      const a = ahead;
      ahead = undefined;
      return a;
    }
    const n = pieces.next();
    return n.done ? undefined : n.value;
  };
  /** A per-piece buffer for a scatter read: the caller's (`allocate`) or a recycled one. */
  const bufferFor = (
    length: number,
    alone: boolean,
  ): { buf: Buffer; owner: T | undefined; pooled: boolean } => {
    const supplied = options.allocate?.(length);
    if (supplied) return { buf: supplied.buffer.subarray(0, length), owner: supplied.owner, pooled: false };
    let buf = pool.pop();
    // Buffers from before the request size grew are too small: let them go.
    while (buf && buf.length < length) buf = pool.pop();
    buf ??= Buffer.allocUnsafeSlow(Math.max(length, alone ? sizer.size : 0));
    return { buf: buf.subarray(0, length), owner: undefined, pooled: true };
  };
  const push = (
    piece: { offset: number; length: number },
    done: Promise<Buffer>,
    owner: T | undefined,
    pooled: boolean,
    last: boolean,
  ) => {
    done.catch(() => {}); // observed when it reaches the head of the window
    window.push({ ...piece, done, owner, pooled, last });
  };
  const refill = () => {
    while (requests < sizer.depth) {
      const first = nextPiece();
      if (!first) return;
      const group = [first];
      let total = first.length;
      for (let n = nextPiece(); n; n = nextPiece()) {
        const prev = group[group.length - 1]!;
        if (n.offset !== prev.offset + prev.length || total + n.length > sizer.size) {
          ahead = n;
          break;
        }
        group.push(n);
        total += n.length;
      }
      requests++;
      const last = group.length - 1;
      if (!options.allocate && !reuse) {
        // Fresh buffers: one read of the whole group, whose pieces are views of it.
        const whole = client.read(first.offset, total, { signal });
        let at = 0;
        group.forEach((piece, i) => {
          const from = at;
          push(
            piece,
            whole.then((b) => b.subarray(from, from + piece.length)),
            undefined,
            false,
            i === last,
          );
          at += piece.length;
        });
        continue;
      }
      const bufs = group.map((piece) => bufferFor(piece.length, group.length === 1));
      const read = client.readIntoParts(
        first.offset,
        bufs.map((b) => b.buf),
        { signal },
      );
      group.forEach((piece, i) => {
        const { buf, owner, pooled } = bufs[i]!;
        push(
          piece,
          read.then(() => buf),
          owner,
          pooled,
          i === last,
        );
      });
    }
  };
  try {
    refill();
    while (window.length > 0) {
      const head = window[0]!;
      let data: Buffer;
      try {
        data = await head.done;
      } catch (e) {
        throw annotate(e, head.offset, lastCompleted, options.signal);
      }
      window.shift();
      if (head.last) requests--;
      if (held)
        pool.push(Buffer.from(held.buffer, held.byteOffset, held.buffer.byteLength - held.byteOffset));
      held = head.pooled ? data : undefined;
      refill();
      bytesRead += data.length;
      sizer.record(data.length);
      lastCompleted = head.offset + head.length;
      yield { offset: head.offset, data, owner: head.owner };
      options.onProgress?.(bytesRead);
    }
  } finally {
    local.abort(new CairnError("aborted", "readExtents consumer stopped"));
  }
}

/** Largest request the adaptive sizer grows to (latency-bound sources: network, slow storage). */
export const MAX_ADAPTIVE_REQUEST_SIZE = 4 * 1024 * 1024;

/** Bytes the adaptive sizer may keep in flight (request size × depth). */
export const MAX_ADAPTIVE_IN_FLIGHT = 64 * 1024 * 1024;

/**
 * Hill-climbs the request size, then the depth: doubles one while each doubling raises throughput by
 * more than 15% (a latency-bound source: per-request cost dominates), and settles when it stops
 * paying. Short extents cap the request size, so depth is the second lever. On a fast local export
 * the first doubling gains nothing and both stay where they started.
 */
class RequestSizer {
  private phase: "size" | "depth" | "settled";
  private windowStart = performance.now();
  private windowBytes = 0;
  private lastRate: number | undefined;

  constructor(
    public size: number,
    public depth: number,
    private readonly maxSize: number,
    enabled: boolean,
  ) {
    this.phase = !enabled ? "settled" : size < maxSize ? "size" : "depth";
  }

  private canGrow(): boolean {
    return this.phase === "size"
      ? this.size * 2 <= this.maxSize && this.size * 2 * this.depth <= MAX_ADAPTIVE_IN_FLIGHT
      : this.depth * 2 * this.size <= MAX_ADAPTIVE_IN_FLIGHT;
  }

  private grow(sign: 1 | -1): void {
    if (this.phase === "size") this.size = sign > 0 ? this.size * 2 : Math.max(1, Math.floor(this.size / 2));
    else if (this.phase === "depth")
      this.depth = sign > 0 ? this.depth * 2 : Math.max(1, Math.floor(this.depth / 2));
  }

  private nextPhase(): void {
    this.phase = this.phase === "size" ? "depth" : "settled";
    this.lastRate = undefined;
    if (this.phase === "depth" && !this.canGrow()) this.phase = "settled";
  }

  record(bytes: number): void {
    if (this.phase === "settled") return;
    this.windowBytes += bytes;
    if (this.windowBytes < Math.max(8 * 1024 * 1024, 32 * this.size)) return;
    const now = performance.now();
    const rate = this.windowBytes / Math.max(0.001, now - this.windowStart);
    this.windowBytes = 0;
    this.windowStart = now;
    if (this.lastRate === undefined || rate > this.lastRate * 1.15) {
      this.lastRate = rate;
      if (this.canGrow()) this.grow(1);
      else this.nextPhase();
    } else {
      this.grow(-1);
      this.nextPhase();
    }
  }
}

/** Callback form of readExtents: awaits `sink` for each piece (its promise is the back-pressure). */
export async function readExtentsTo<T = unknown>(
  client: NbdClient,
  extents: Iterable<{ offset: number; length: number }>,
  sink: (offset: number, data: Buffer, owner: T | undefined) => void | Promise<void>,
  options: ReadExtentsOptions<T> = {},
): Promise<{ bytesRead: number }> {
  let bytesRead = 0;
  for await (const piece of readExtents(client, extents, options)) {
    await sink(piece.offset, piece.data, piece.owner);
    bytesRead += piece.data.length;
  }
  return { bytesRead };
}

function annotate(
  e: unknown,
  resumeFrom: number,
  lastCompleted: number | undefined,
  signal?: AbortSignal,
): unknown {
  if (signal?.aborted) return abortError(signal, "reading NBD extents");
  if (!isCairnError(e) || !e.transient) return e;
  return new CairnError(e.code, `${e.message}; resume from offset ${resumeFrom}`, {
    cause: e,
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    details: { ...e.details, resumeFrom, lastCompletedEnd: lastCompleted ?? null },
  });
}
