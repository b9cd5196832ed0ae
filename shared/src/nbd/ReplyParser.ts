import { CairnError } from "../errors/CairnError.js";
import {
  MAX_BLOCK_STATUS_CHUNK,
  MAX_STRING_LENGTH,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_READ,
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_REPLY_HEADER_SIZE,
} from "./constants.js";
import type { Extent } from "./extents/Extent.js";
import { StickyFailure } from "./StickyFailure.js";
import { readU64 } from "./u64.js";

/** What the parser needs to know about an outstanding request to validate its replies. */
export interface InflightRequest {
  type: number;
  offset: number;
  length: number;
}

/**
 * Receives parsed replies. Buffers passed to onData are views into socket buffers that are only
 * valid during the call: copy them out (the client copies straight into the read's destination).
 */
export interface ReplySink {
  lookup(handle: number): InflightRequest | undefined;
  onSimpleReply(handle: number, error: number): void;
  onData(handle: number, offset: number, data: Buffer): void;
  /** Payload bytes that were read straight into the destination (see ReplyParser.direct). */
  onDataLanded?(handle: number, offset: number, length: number): void;
  onHole(handle: number, offset: number, length: number): void;
  onBlockStatus(handle: number, contextId: number, extents: Extent[]): void;
  onError(handle: number, error: number, message: string, offset: number | undefined): void;
  /** The chunk just delivered carried NBD_REPLY_FLAG_DONE: no more replies for this handle. */
  onDone(handle: number): void;
}

enum State {
  Magic = 0,
  Header = 1,
  Payload = 2,
  DataOffset = 3,
  DataStream = 4,
}

/**
 * Push parser for the transmission phase's replies (simple and structured; see proto.md
 * "Transmission phase"). Feed it socket data with push(); it calls the sink as replies complete.
 * It throws CairnError("protocol") on any violation and is unusable afterwards.
 *
 * Memory is bounded: headers go into a fixed 20-byte buffer, OFFSET_DATA payloads are streamed to
 * the sink without buffering, and any other payload is buffered only after its length has been
 * checked against a per-type cap (error strings 4 KiB, block status MAX_BLOCK_STATUS_CHUNK).
 */
export class ReplyParser {
  private state = State.Magic;
  private readonly hdr = Buffer.alloc(STRUCTURED_REPLY_HEADER_SIZE);
  private have = 0;
  private need = 4;
  // Current structured chunk.
  private flags = 0;
  private type = 0;
  private handle = 0;
  private length = 0;
  private payload: Buffer = Buffer.alloc(0);
  private req: InflightRequest | undefined;
  private dataOffset = 0;
  private dataLeft = 0;
  private readonly failure = new StickyFailure();

  constructor(private readonly sink: ReplySink) {}

  push(chunk: Buffer): void {
    this.failure.run("NBD reply parser", () => this.consume(chunk));
  }

  /** While streaming read data: the handle, absolute offset and length still to come. */
  direct(): { handle: number; offset: number; length: number } | undefined {
    if (this.failure.error || this.state !== State.DataStream) return undefined;
    return { handle: this.handle, offset: this.dataOffset, length: this.dataLeft };
  }

  /** `n` bytes of the current data payload were placed in the destination by the caller. */
  landed(n: number): void {
    if (this.failure.error) throw this.failure.error;
    if (this.state !== State.DataStream || n > this.dataLeft) {
      this.failure.error = new CairnError("internal", "NBD direct read landed outside a data payload");
      throw this.failure.error;
    }
    this.sink.onDataLanded?.(this.handle, this.dataOffset, n);
    this.dataOffset += n;
    this.dataLeft -= n;
    if (this.dataLeft === 0) this.chunkComplete();
  }

  /** True between replies: nothing half-read. A close here is clean; elsewhere it truncated a reply. */
  get idle(): boolean {
    return this.state === State.Magic && this.have === 0;
  }

  private consume(chunk: Buffer): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      switch (this.state) {
        case State.Magic:
        case State.Header:
        case State.DataOffset: {
          const take = Math.min(this.need - this.have, n - pos);
          chunk.copy(this.hdr, this.have, pos, pos + take);
          this.have += take;
          pos += take;
          if (this.have === this.need) this.headerComplete();
          break;
        }
        case State.Payload: {
          const take = Math.min(this.need - this.have, n - pos);
          chunk.copy(this.payload, this.have, pos, pos + take);
          this.have += take;
          pos += take;
          if (this.have === this.need) this.payloadComplete();
          break;
        }
        case State.DataStream: {
          const take = Math.min(this.dataLeft, n - pos);
          this.sink.onData(this.handle, this.dataOffset, chunk.subarray(pos, pos + take));
          this.dataOffset += take;
          this.dataLeft -= take;
          pos += take;
          if (this.dataLeft === 0) this.chunkComplete();
          break;
        }
      }
    }
  }

  private headerComplete(): void {
    if (this.state === State.Magic) {
      const magic = this.hdr.readUInt32BE(0);
      if (magic === NBD_SIMPLE_REPLY_MAGIC) {
        this.state = State.Header;
        this.need = SIMPLE_REPLY_SIZE;
      } else if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
        this.state = State.Header;
        this.need = STRUCTURED_REPLY_HEADER_SIZE;
      } else if (magic === NBD_EXTENDED_REPLY_MAGIC) {
        throw protocol("NBD server sent an extended-header reply, which was not negotiated");
      } else {
        throw protocol(`bad NBD reply magic 0x${magic.toString(16).padStart(8, "0")}`);
      }
      return;
    }
    if (this.state === State.DataOffset) {
      const offset = readU64(this.hdr, 0, "read chunk offset");
      const req = this.req!;
      const dataLen = this.length - 8;
      if (offset < req.offset || offset + dataLen > req.offset + req.length) {
        throw protocol(
          `NBD read reply chunk [${offset}, +${dataLen}) lies outside request [${req.offset}, +${req.length})`,
        );
      }
      this.dataOffset = offset;
      this.dataLeft = dataLen;
      this.state = State.DataStream;
      return;
    }
    // Full header.
    const magic = this.hdr.readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      const error = this.hdr.readUInt32BE(4);
      const handle = this.readHandle(8);
      const req = this.sink.lookup(handle);
      if (!req) throw protocol(`NBD server replied to unknown handle ${handle}`);
      if (error === 0 && (req.type === NBD_CMD_READ || req.type === NBD_CMD_BLOCK_STATUS)) {
        throw protocol("NBD server sent a simple reply to a read/block-status despite structured replies");
      }
      this.reset();
      this.sink.onSimpleReply(handle, error);
      return;
    }
    this.flags = this.hdr.readUInt16BE(4);
    this.type = this.hdr.readUInt16BE(6);
    this.handle = this.readHandle(8);
    this.length = this.hdr.readUInt32BE(16);
    const req = this.sink.lookup(this.handle);
    if (!req) throw protocol(`NBD server replied to unknown handle ${this.handle}`);
    this.req = req;
    this.checkChunk(req);
    if (this.type === NBD_REPLY_TYPE_OFFSET_DATA) {
      this.state = State.DataOffset;
      this.have = 0;
      this.need = 8;
    } else if (this.length === 0) {
      this.payload = Buffer.alloc(0);
      this.payloadComplete();
    } else {
      this.state = State.Payload;
      this.payload = Buffer.allocUnsafe(this.length);
      this.have = 0;
      this.need = this.length;
    }
  }

  private readHandle(at: number): number {
    // We only ever send handles < 2^32 (hi word 0); anything else cannot match a request.
    const hi = this.hdr.readUInt32BE(at);
    const lo = this.hdr.readUInt32BE(at + 4);
    return hi === 0 ? lo : -1;
  }

  private checkChunk(req: InflightRequest): void {
    const t = this.type;
    const len = this.length;
    const done = (this.flags & NBD_REPLY_FLAG_DONE) !== 0;
    if (t === NBD_REPLY_TYPE_NONE) {
      if (len !== 0 || !done) throw protocol("NBD_REPLY_TYPE_NONE must be empty and carry DONE");
    } else if (t === NBD_REPLY_TYPE_OFFSET_DATA) {
      if (req.type !== NBD_CMD_READ) throw protocol("NBD server sent read data for a non-read request");
      if (len < 9 || len - 8 > req.length) {
        throw protocol(`NBD read data chunk length ${len} invalid for a ${req.length}-byte read`);
      }
    } else if (t === NBD_REPLY_TYPE_OFFSET_HOLE) {
      if (req.type !== NBD_CMD_READ) throw protocol("NBD server sent a hole for a non-read request");
      if (len !== 12) throw protocol(`NBD hole chunk length ${len}, expected 12`);
    } else if (t === NBD_REPLY_TYPE_BLOCK_STATUS) {
      if (req.type !== NBD_CMD_BLOCK_STATUS)
        throw protocol("NBD server sent block status for another request");
      if (len < 12 || (len - 4) % 8 !== 0 || len > MAX_BLOCK_STATUS_CHUNK) {
        throw protocol(`NBD block status chunk length ${len} invalid`);
      }
    } else if ((t & NBD_REPLY_TYPE_ERROR_BIT) !== 0) {
      if (len < 6 || len > 6 + MAX_STRING_LENGTH + 8) throw protocol(`NBD error chunk length ${len} invalid`);
    } else {
      throw protocol(`NBD server sent unknown reply chunk type ${t}`);
    }
  }

  private payloadComplete(): void {
    const p = this.payload;
    const req = this.req!;
    const t = this.type;
    if (t === NBD_REPLY_TYPE_OFFSET_HOLE) {
      const offset = readU64(p, 0, "hole offset");
      const size = p.readUInt32BE(8);
      if (size === 0 || offset < req.offset || offset + size > req.offset + req.length) {
        throw protocol(`NBD hole [${offset}, +${size}) lies outside request [${req.offset}, +${req.length})`);
      }
      this.sink.onHole(this.handle, offset, size);
    } else if (t === NBD_REPLY_TYPE_BLOCK_STATUS) {
      const contextId = p.readUInt32BE(0);
      const extents: Extent[] = [];
      let offset = req.offset;
      for (let at = 4; at < p.length; at += 8) {
        const length = p.readUInt32BE(at);
        const flags = p.readUInt32BE(at + 4);
        if (length === 0) throw protocol("NBD server sent a zero-length extent");
        extents.push({ offset, length, flags });
        offset += length;
      }
      this.sink.onBlockStatus(this.handle, contextId, extents);
    } else if ((t & NBD_REPLY_TYPE_ERROR_BIT) !== 0) {
      const error = p.readUInt32BE(0);
      const msgLen = p.readUInt16BE(4);
      if (error === 0) throw protocol("NBD error chunk carries error code 0");
      let offset: number | undefined;
      if (t === NBD_REPLY_TYPE_ERROR) {
        if (msgLen !== p.length - 6) throw protocol("NBD error chunk message length mismatch");
      } else if (t === NBD_REPLY_TYPE_ERROR_OFFSET) {
        if (msgLen !== p.length - 14) throw protocol("NBD error-offset chunk message length mismatch");
        offset = readU64(p, 6 + msgLen, "error offset");
      } else if (msgLen > p.length - 6) {
        throw protocol("NBD error chunk message overruns the chunk");
      }
      const message = p.toString("utf8", 6, 6 + msgLen);
      this.sink.onError(this.handle, error, message, offset);
    }
    this.chunkComplete();
  }

  private chunkComplete(): void {
    const handle = this.handle;
    const done = (this.flags & NBD_REPLY_FLAG_DONE) !== 0;
    this.reset();
    if (done) this.sink.onDone(handle);
  }

  private reset(): void {
    this.state = State.Magic;
    this.have = 0;
    this.need = 4;
    this.req = undefined;
    this.payload = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

function protocol(message: string): CairnError {
  return new CairnError("protocol", message, {
    hint: "the NBD server sent a malformed reply; check the server's version and logs",
  });
}
