import type { Duplex } from "node:stream";
import { abortError, CairnError } from "../errors/CairnError.js";

/** Reads exact byte counts from a stream during the handshake (the transmission phase uses push parsers). */
export interface ByteSource {
  read(n: number, signal?: AbortSignal): Promise<Buffer>;
}

/** Above this much unread input we pause the socket: a peer cannot make us buffer without bound. */
const HIGH_WATER = 1024 * 1024;

/**
 * Buffers a socket's data so the handshake can `await read(n)`. `detach()` stops listening and
 * returns anything read ahead, so the socket can be handed to TLS or to the transmission parser.
 */
export class ByteReader implements ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended: Error | undefined;
  private waiter: (() => void) | undefined;
  private readonly onData = (b: Buffer) => {
    this.chunks.push(b);
    this.buffered += b.length;
    if (this.buffered > HIGH_WATER) this.stream.pause();
    this.wake();
  };
  private readonly onEnd = () => {
    this.ended ??= new CairnError("unavailable", `${this.peer} closed the connection during the handshake`);
    this.wake();
  };
  private readonly onError = (e: Error) => {
    this.ended ??= new CairnError("unavailable", `connection to ${this.peer} failed: ${e.message}`, {
      cause: e,
    });
    this.wake();
  };

  /**
   * With `external`, data arrives through push() (sockets using a reused `onread` buffer)
   * instead of 'data' events.
   */
  constructor(
    private readonly stream: Duplex,
    private readonly peer: string,
    private readonly external = false,
  ) {
    if (!external) stream.on("data", this.onData);
    stream.on("end", this.onEnd);
    stream.on("close", this.onEnd);
    stream.on("error", this.onError);
  }

  /** Feeds bytes in external mode; they are copied (the caller's buffer is reused). */
  push(chunk: Buffer): void {
    this.onData(Buffer.from(chunk));
  }

  async read(n: number, signal?: AbortSignal): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.ended) throw this.ended;
      if (signal?.aborted) throw abortError(signal, `NBD handshake with ${this.peer}`);
      this.stream.resume();
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          this.waiter = undefined;
          resolve();
        };
        this.waiter = done;
        signal?.addEventListener("abort", done, { once: true });
      });
    }
    return this.take(n);
  }

  /** Stops consuming the stream; returns bytes read ahead of the last read(). */
  detach(): Buffer {
    if (!this.external) this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("close", this.onEnd);
    this.stream.off("error", this.onError);
    this.stream.pause();
    const rest = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }

  private wake(): void {
    this.waiter?.();
  }
}

/** A ByteSource over a fixed buffer, for parsers under test and fuzzing. */
export class BufferSource implements ByteSource {
  private pos = 0;
  constructor(private readonly data: Buffer) {}
  async read(n: number): Promise<Buffer> {
    if (this.pos + n > this.data.length) {
      throw new CairnError("unavailable", "peer closed the connection during the handshake");
    }
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}
