import type net from "node:net";
import { CairnError } from "../errors/CairnError.js";
import type { BlockDevice } from "./BlockDevice.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_READ_ONLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from "./constants.js";
import type { Extent } from "./extents/Extent.js";
import type { NbdRequest, RequestParser } from "./RequestParser.js";
import {
  BASE_ALLOCATION_ID,
  DIRTY_BITMAP_ID,
  type ExportDescription,
  type HandshakeOutcome,
} from "./ServerHandshake.js";
import { writeU64 } from "./u64.js";

/** Most extents in one block-status reply: keeps replies small; clients loop for the rest. */
const MAX_EXTENTS_PER_REPLY = 64 * 1024;

/** An errno to send back, as opposed to an error that ends the connection. */
class NbdReplyError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The transmission phase of one server connection. Requests run concurrently (up to
 * `maxInflight`, then we stop reading the socket) and replies go out in completion order.
 */
export class Transmission {
  private inflight = 0;
  private disconnecting = false;
  private readonly abortController = new AbortController();
  private readonly readOnly: boolean;

  constructor(
    private readonly socket: net.Socket,
    private readonly device: BlockDevice,
    private readonly desc: ExportDescription,
    private readonly negotiated: HandshakeOutcome,
    private readonly opts: { maxInflight: number; onError: (e: unknown) => void },
  ) {
    this.readOnly = (desc.flags & NBD_FLAG_READ_ONLY) !== 0;
    socket.on("close", () => this.abort());
  }

  start(parser: RequestParser, leftover: Buffer): void {
    const feed = (d: Buffer) => {
      try {
        parser.push(d);
      } catch (e) {
        this.opts.onError(e);
        this.socket.destroy();
      }
    };
    this.socket.on("data", feed);
    if (leftover.length) feed(leftover);
    this.socket.resume();
  }

  abort(): void {
    this.abortController.abort(new CairnError("aborted", "NBD client connection closed"));
  }

  handle(r: NbdRequest): void {
    if (this.disconnecting) return;
    if (r.type === NBD_CMD_DISC) {
      this.disconnecting = true;
      this.maybeEnd();
      return;
    }
    this.inflight++;
    if (this.inflight >= this.opts.maxInflight) this.socket.pause();
    this.run(r)
      .catch((e: unknown) => {
        if (e instanceof NbdReplyError) return this.sendError(r, e.errno, e.message);
        if (this.abortController.signal.aborted) return;
        this.opts.onError(e);
        this.sendError(r, NBD_EIO, e instanceof Error ? e.message : "I/O error");
      })
      .finally(() => {
        this.inflight--;
        if (this.inflight < this.opts.maxInflight && !this.disconnecting) this.socket.resume();
        this.maybeEnd();
      });
  }

  private maybeEnd(): void {
    if (this.disconnecting && this.inflight === 0) this.socket.end();
  }

  private async run(r: NbdRequest): Promise<void> {
    const signal = this.abortController.signal;
    const dev = this.device;
    const writes = r.type === NBD_CMD_WRITE || r.type === NBD_CMD_WRITE_ZEROES || r.type === NBD_CMD_TRIM;
    if (writes && this.readOnly) throw new NbdReplyError(NBD_EPERM, "export is read-only");
    if (r.type !== NBD_CMD_FLUSH && r.offset + r.length > this.desc.size) {
      throw new NbdReplyError(writes ? NBD_ENOSPC : NBD_EINVAL, "request beyond the end of the export");
    }
    switch (r.type) {
      case NBD_CMD_READ: {
        if (r.length === 0 || r.length > this.desc.maxPayload) {
          throw new NbdReplyError(NBD_EINVAL, `read length ${r.length} out of range`);
        }
        const data = await dev.read(r.offset, r.length, signal);
        return this.sendData(r, data);
      }
      case NBD_CMD_WRITE:
        await dev.write!(r.offset, r.payload ?? Buffer.alloc(0), signal);
        return this.sendOk(r);
      case NBD_CMD_WRITE_ZEROES:
        if (dev.writeZeroes) await dev.writeZeroes(r.offset, r.length, signal);
        else await writeZeroBuffers(dev, r.offset, r.length, signal);
        return this.sendOk(r);
      case NBD_CMD_TRIM:
        await dev.trim?.(r.offset, r.length, signal);
        return this.sendOk(r);
      case NBD_CMD_FLUSH:
        await dev.flush?.(signal);
        return this.sendOk(r);
      case NBD_CMD_CACHE:
        return this.sendOk(r);
      case NBD_CMD_BLOCK_STATUS: {
        const { baseAllocation, dirtyBitmap } = this.negotiated;
        if (!this.negotiated.structured || (!baseAllocation && dirtyBitmap === undefined) || r.length === 0) {
          throw new NbdReplyError(NBD_EINVAL, "block status without a negotiated meta context");
        }
        // One chunk per negotiated context; only the last one ends the reply.
        const chunks: [number, Extent[]][] = [];
        if (baseAllocation) {
          chunks.push([
            BASE_ALLOCATION_ID,
            dev.blockStatus
              ? await dev.blockStatus(r.offset, r.length, signal)
              : [{ offset: r.offset, length: r.length, flags: 0 }],
          ]);
        }
        if (dirtyBitmap !== undefined && dev.dirtyStatus)
          chunks.push([DIRTY_BITMAP_ID, await dev.dirtyStatus(dirtyBitmap, r.offset, r.length, signal)]);
        for (const [i, [id, extents]] of chunks.entries())
          this.sendBlockStatus(r, extents, id, i === chunks.length - 1);
        return;
      }
      default:
        throw new NbdReplyError(NBD_EINVAL, `unknown command ${r.type}`);
    }
  }

  private sendOk(r: NbdRequest): void {
    this.socket.write(simpleHeader(r.handle, 0));
  }

  private sendData(r: NbdRequest, data: Buffer): void {
    if (!this.negotiated.structured) {
      this.socket.cork();
      this.socket.write(simpleHeader(r.handle, 0));
      this.socket.write(data);
      this.socket.uncork();
      return;
    }
    const h = structuredHeader(r.handle, NBD_REPLY_TYPE_OFFSET_DATA, 8 + data.length);
    const off = Buffer.allocUnsafe(8);
    writeU64(off, r.offset, 0);
    this.socket.cork();
    this.socket.write(h);
    this.socket.write(off);
    this.socket.write(data);
    this.socket.uncork();
  }

  private sendBlockStatus(r: NbdRequest, raw: Extent[], contextId: number, done: boolean): void {
    // Clip to the request, require contiguity from r.offset, honour REQ_ONE.
    const end = r.offset + r.length;
    const pairs: [number, number][] = [];
    let at = r.offset;
    for (const e of raw) {
      if (e.offset !== at || e.length <= 0) break;
      const len = Math.min(e.offset + e.length, end) - at;
      if (len <= 0) break;
      pairs.push([len, e.flags]);
      at += len;
      if (at >= end || pairs.length >= MAX_EXTENTS_PER_REPLY || r.flags & NBD_CMD_FLAG_REQ_ONE) break;
    }
    if (pairs.length === 0)
      throw new CairnError("internal", "block device returned no extents for block status");
    const payload = Buffer.allocUnsafe(4 + 8 * pairs.length);
    payload.writeUInt32BE(contextId, 0);
    pairs.forEach(([len, flags], i) => {
      payload.writeUInt32BE(len, 4 + 8 * i);
      payload.writeUInt32BE(flags, 8 + 8 * i);
    });
    this.socket.write(
      Buffer.concat([structuredHeader(r.handle, NBD_REPLY_TYPE_BLOCK_STATUS, payload.length, done), payload]),
    );
  }

  private sendError(r: NbdRequest, errno: number, message: string): void {
    if (this.socket.destroyed) return;
    if (!this.negotiated.structured || (r.type !== NBD_CMD_READ && r.type !== NBD_CMD_BLOCK_STATUS)) {
      this.socket.write(simpleHeader(r.handle, errno));
      return;
    }
    const msg = Buffer.from(message.slice(0, 200), "utf8");
    const p = Buffer.alloc(6 + msg.length);
    p.writeUInt32BE(errno, 0);
    p.writeUInt16BE(msg.length, 4);
    msg.copy(p, 6);
    this.socket.write(Buffer.concat([structuredHeader(r.handle, NBD_REPLY_TYPE_ERROR, p.length), p]));
  }
}

function simpleHeader(handle: Buffer, error: number): Buffer {
  const h = Buffer.allocUnsafe(16);
  h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(error, 4);
  handle.copy(h, 8);
  return h;
}

function structuredHeader(handle: Buffer, type: number, length: number, done = true): Buffer {
  const h = Buffer.allocUnsafe(20);
  h.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(done ? NBD_REPLY_FLAG_DONE : 0, 4);
  h.writeUInt16BE(type, 6);
  handle.copy(h, 8);
  h.writeUInt32BE(length, 16);
  return h;
}

async function writeZeroBuffers(dev: BlockDevice, offset: number, length: number, signal: AbortSignal) {
  const zero = Buffer.alloc(Math.min(length, 1024 * 1024));
  for (let at = 0; at < length; at += zero.length) {
    await dev.write!(offset + at, zero.subarray(0, Math.min(zero.length, length - at)), signal);
  }
}
