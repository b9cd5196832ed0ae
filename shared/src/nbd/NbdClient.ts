import { abortError, CairnError } from "../errors/CairnError.js";
import { ByteReader } from "./ByteReader.js";
import { ClientHandshake } from "./ClientHandshake.js";
import {
  MAX_BLOCK_STATUS_REQUEST,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from "./constants.js";
import type { Extent } from "./extents/Extent.js";
import { mergeExtents } from "./extents/mergeExtents.js";
import { NbdConnection, type NbdConnectOptions } from "./NbdConnection.js";
import { describeTarget, type NbdTarget, openSocket } from "./openSocket.js";

export interface NbdClientOptions extends NbdConnectOptions {
  /** Connections to open when the server advertises CAN_MULTI_CONN (otherwise 1). Default 1. */
  connections?: number;
}

export interface OpOptions {
  signal?: AbortSignal;
}

export interface WriteOptions extends OpOptions {
  /** NBD_CMD_FLAG_FUA: the write is durable when it completes. */
  fua?: boolean;
}

const SLAB_SIZE = 8 * 1024 * 1024;

/** Largest TRIM / WRITE_ZEROES request we send (length is 32-bit; stay well clear). */
const MAX_RANGE_REQUEST = 1024 * 1024 * 1024;

/**
 * NBD client (fixed newstyle, structured replies, optional STARTTLS, multi-conn).
 *
 * Every operation takes an AbortSignal. A dropped connection fails every in-flight operation with
 * CairnError("unavailable") (retryable); protocol violations fail with "protocol"; a request
 * without a reply for `requestTimeoutMs` fails the connection with "timeout". Requests may be
 * issued concurrently: they are pipelined and matched to replies by handle. Offsets are numbers.
 */
export class NbdClient {
  private constructor(
    private readonly conns: NbdConnection[],
    readonly exportName: string,
  ) {}

  static async connect(options: NbdClientOptions): Promise<NbdClient> {
    const first = await NbdConnection.connect(options);
    const conns = [first];
    const want = Math.max(1, Math.floor(options.connections ?? 1));
    try {
      if (want > 1 && first.info.flags & NBD_FLAG_CAN_MULTI_CONN) {
        const more = await Promise.all(
          Array.from({ length: want - 1 }, () => NbdConnection.connect(options)),
        );
        conns.push(...more);
      }
    } catch (e) {
      for (const c of conns) c.destroy();
      throw e;
    }
    return new NbdClient(conns, options.exportName ?? "");
  }

  /** NBD_OPT_LIST: the server's exports, then NBD_OPT_ABORT. */
  static async listExports(
    options: Pick<NbdConnectOptions, "target" | "connectTimeoutMs" | "signal">,
  ): Promise<{ name: string; description: string }[]> {
    return withHandshake(options, (hs) => hs.list());
  }

  /** NBD_OPT_LIST_META_CONTEXT for an export, e.g. queries ["qemu:dirty-bitmap:"] lists all bitmaps. */
  static async listMetaContexts(
    options: Pick<NbdConnectOptions, "target" | "connectTimeoutMs" | "signal" | "exportName">,
    queries: readonly string[],
  ): Promise<string[]> {
    return withHandshake(options, async (hs) => {
      await hs.structuredReplies();
      return [...(await hs.metaContexts(options.exportName ?? "", queries, true)).keys()];
    });
  }

  get size(): number {
    return this.first.info.size;
  }
  /** Transmission flags from the server (NBD_FLAG_*). */
  get flags(): number {
    return this.first.info.flags;
  }
  get readOnly(): boolean {
    return (this.flags & NBD_FLAG_READ_ONLY) !== 0;
  }
  get canMultiConn(): boolean {
    return (this.flags & NBD_FLAG_CAN_MULTI_CONN) !== 0;
  }
  /** Largest READ/WRITE payload the server accepts (NBD_INFO_BLOCK_SIZE maximum). */
  get maxPayload(): number {
    return this.first.info.maxPayload;
  }
  get minBlock(): number {
    return this.first.info.minBlock;
  }
  get preferredBlock(): number {
    return this.first.info.preferredBlock;
  }
  get connectionCount(): number {
    return this.conns.length;
  }
  /** True when every connection reads into reused or destination buffers (no 'data' events). */
  get readsIntoBuffers(): boolean {
    return this.conns.every((c) => c.readsIntoBuffers);
  }
  /** Meta contexts the server accepted (name → id). */
  get metaContexts(): ReadonlyMap<string, number> {
    return this.first.contexts;
  }

  /** Reads [offset, offset+length). Lengths above maxPayload are split into parallel requests. */
  async read(offset: number, length: number, opts: OpOptions = {}): Promise<Buffer> {
    const dest = this.allocate(length);
    await this.readInto(offset, dest, opts);
    return dest;
  }

  async readInto(offset: number, dest: Buffer, opts: OpOptions = {}): Promise<void> {
    this.checkRange(offset, dest.length);
    const max = this.maxPayload;
    if (dest.length <= max) return this.pick().readInto(offset, dest, opts.signal);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < dest.length; at += max) {
      parts.push(
        this.pick().readInto(offset + at, dest.subarray(at, Math.min(dest.length, at + max)), opts.signal),
      );
    }
    await Promise.all(parts);
  }

  /**
   * Reads [offset, offset + the parts' total length) into `parts`, end to end, with one request
   * (a scatter read) when the total fits the server's maximum payload, else one request per part.
   */
  async readIntoParts(offset: number, parts: readonly Buffer[], opts: OpOptions = {}): Promise<void> {
    const total = parts.reduce((n, p) => n + p.length, 0);
    this.checkRange(offset, total);
    if (parts.length === 1) return this.readInto(offset, parts[0]!, opts);
    if (total <= this.maxPayload) return this.pick().readIntoParts(offset, parts, opts.signal);
    let at = offset;
    const reads: Promise<void>[] = [];
    for (const p of parts) {
      reads.push(this.readInto(at, p, opts));
      at += p.length;
    }
    await Promise.all(reads);
  }

  async write(offset: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    this.checkWritable("write");
    this.checkRange(offset, data.length);
    const flags = opts.fua ? NBD_CMD_FLAG_FUA : 0;
    const max = this.maxPayload;
    const parts: Promise<void>[] = [];
    for (let at = 0; at < data.length; at += max) {
      const piece = data.subarray(at, Math.min(data.length, at + max));
      parts.push(this.pick().command(NBD_CMD_WRITE, flags, offset + at, piece.length, piece, opts.signal));
    }
    await Promise.all(parts);
  }

  /** WRITE_ZEROES; `noHole` asks the server to allocate rather than punch a hole. */
  async writeZeroes(
    offset: number,
    length: number,
    opts: WriteOptions & { noHole?: boolean } = {},
  ): Promise<void> {
    this.checkWritable("write-zeroes");
    if ((this.flags & NBD_FLAG_SEND_WRITE_ZEROES) === 0) {
      throw new CairnError("unimplemented", "NBD server does not support WRITE_ZEROES");
    }
    const flags = (opts.fua ? NBD_CMD_FLAG_FUA : 0) | (opts.noHole ? NBD_CMD_FLAG_NO_HOLE : 0);
    await this.ranged(NBD_CMD_WRITE_ZEROES, flags, offset, length, opts.signal);
  }

  async trim(offset: number, length: number, opts: WriteOptions = {}): Promise<void> {
    this.checkWritable("trim");
    if ((this.flags & NBD_FLAG_SEND_TRIM) === 0)
      throw new CairnError("unimplemented", "NBD server does not support TRIM");
    await this.ranged(NBD_CMD_TRIM, opts.fua ? NBD_CMD_FLAG_FUA : 0, offset, length, opts.signal);
  }

  /** FLUSH on every connection (each connection's completed writes become durable). */
  async flush(opts: OpOptions = {}): Promise<void> {
    if ((this.flags & NBD_FLAG_SEND_FLUSH) === 0) return;
    await Promise.all(this.conns.map((c) => c.command(NBD_CMD_FLUSH, 0, 0, 0, undefined, opts.signal)));
  }

  /**
   * One BLOCK_STATUS request. Returns the extents of `context` starting at `offset`, clipped to
   * the requested range; the server may describe less than asked (callers loop, see mapExtents).
   */
  async blockStatus(
    context: string,
    offset: number,
    length: number,
    opts: OpOptions = {},
  ): Promise<Extent[]> {
    this.checkRange(offset, length);
    // Context ids are per connection: take the id the chosen connection negotiated.
    const conn = this.pick();
    const id = this.contextId(context, conn);
    const res = await conn.blockStatus(offset, Math.min(length, MAX_BLOCK_STATUS_REQUEST), 0, opts.signal);
    const extents = res.get(id);
    if (!extents?.length) {
      throw new CairnError("protocol", `NBD server sent no block status for context ${context} at ${offset}`);
    }
    return clip(extents, offset, offset + length);
  }

  /**
   * The complete map of `context` over [offset, offset+length) (default: the whole disk), looping
   * BLOCK_STATUS over partial replies and the 32-bit request limit. Adjacent equal extents merged.
   */
  async mapExtents(
    context: string,
    opts: OpOptions & { offset?: number; length?: number } = {},
  ): Promise<Extent[]> {
    const start = opts.offset ?? 0;
    const end = start + (opts.length ?? this.size - start);
    const out: Extent[] = [];
    let at = start;
    while (at < end) {
      if (opts.signal?.aborted) throw abortError(opts.signal, "NBD block status map");
      const part = await this.blockStatus(context, at, end - at, opts);
      for (const e of part) out.push(e);
      at = part[part.length - 1]!.offset + part[part.length - 1]!.length;
    }
    return mergeExtents(out);
  }

  /** NBD_CMD_DISC on every connection once in-flight requests finish; bounded by timeoutMs. */
  async close(timeoutMs = 5000): Promise<void> {
    await Promise.all(this.conns.map((c) => c.close(timeoutMs)));
  }

  /** Drops every connection immediately. */
  destroy(): void {
    for (const c of this.conns) c.destroy();
  }

  private slab: Buffer | undefined;
  private slabUsed = 0;

  /**
   * Read buffers for small requests are carved from 8 MiB slabs: one ArrayBuffer per 256 KiB read
   * made the garbage collector the bottleneck. A slab lives as long as any piece of it does.
   */
  private allocate(length: number): Buffer {
    if (length > SLAB_SIZE / 8) return Buffer.allocUnsafeSlow(length);
    if (!this.slab || this.slabUsed + length > SLAB_SIZE) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      this.slabUsed = 0;
    }
    const b = this.slab.subarray(this.slabUsed, this.slabUsed + length);
    this.slabUsed += (length + 7) & ~7;
    return b;
  }

  private get first(): NbdConnection {
    return this.conns[0]!;
  }

  /** Least-loaded healthy connection; if all have failed, the first (whose error then surfaces). */
  private pick(): NbdConnection {
    let best: NbdConnection | undefined;
    for (const c of this.conns) {
      if (c.failed) continue;
      if (!best || c.inflight < best.inflight) best = c;
    }
    return best ?? this.first;
  }

  private contextId(context: string, conn: NbdConnection): number {
    const id = conn.contexts.get(context);
    if (id === undefined) {
      throw new CairnError("failed-precondition", `NBD meta context ${context} was not negotiated`, {
        hint: "pass it in metaContexts when connecting; for a dirty bitmap check that the bitmap exists",
        details: { negotiated: [...this.metaContexts.keys()] },
      });
    }
    return id;
  }

  private async ranged(type: number, flags: number, offset: number, length: number, signal?: AbortSignal) {
    this.checkRange(offset, length);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += MAX_RANGE_REQUEST) {
      const n = Math.min(length - at, MAX_RANGE_REQUEST);
      parts.push(this.pick().command(type, flags, offset + at, n, undefined, signal));
    }
    await Promise.all(parts);
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new CairnError("invalid-argument", `bad NBD range ${offset}+${length}`);
    }
    if (offset + length > this.size) {
      throw new CairnError(
        "invalid-argument",
        `NBD range ${offset}+${length} is beyond the export size ${this.size}`,
      );
    }
  }

  private checkWritable(what: string): void {
    if (this.readOnly) throw new CairnError("permission-denied", `cannot ${what}: NBD export is read-only`);
  }
}

function clip(extents: Extent[], start: number, end: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    if (e.offset >= end) break;
    const s = Math.max(e.offset, start);
    const t = Math.min(e.offset + e.length, end);
    if (t > s) out.push({ offset: s, length: t - s, flags: e.flags });
  }
  return out;
}

async function withHandshake<T>(
  options: Pick<NbdConnectOptions, "target" | "connectTimeoutMs" | "signal">,
  fn: (hs: ClientHandshake) => Promise<T>,
): Promise<T> {
  const target: NbdTarget = options.target;
  const peer = describeTarget(target);
  const timeoutMs = options.connectTimeoutMs ?? 30_000;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
  const socket = await openSocket(target, timeoutMs, options.signal);
  try {
    const reader = new ByteReader(socket, peer);
    const hs = new ClientHandshake({ source: reader, write: (b) => socket.write(b), signal }, peer);
    await hs.greet();
    const result = await fn(hs);
    await hs.abort();
    return result;
  } finally {
    socket.destroy();
  }
}
