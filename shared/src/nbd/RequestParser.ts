import { CairnError } from "../errors/CairnError.js";
import { NBD_CMD_WRITE, NBD_REQUEST_MAGIC, REQUEST_HEADER_SIZE } from "./constants.js";
import { StickyFailure } from "./StickyFailure.js";
import { readU64 } from "./u64.js";

export interface NbdRequest {
  flags: number;
  type: number;
  /** The client's opaque 8-byte handle, echoed in the reply. */
  handle: Buffer;
  offset: number;
  length: number;
  /** WRITE payload (exactly `length` bytes). */
  payload: Buffer | undefined;
}

/**
 * Push parser for client requests in the transmission phase (proto.md "Request message").
 * Throws CairnError("protocol") on a bad magic or a WRITE larger than `maxPayload` — the server
 * then drops the connection, because it cannot resynchronise the stream. Memory is bounded by the
 * 28-byte header plus one write payload of at most `maxPayload`.
 */
export class RequestParser {
  private readonly hdr = Buffer.alloc(REQUEST_HEADER_SIZE);
  private have = 0;
  private current: NbdRequest | undefined;
  private payloadHave = 0;
  private readonly failure = new StickyFailure();

  constructor(
    private readonly maxPayload: number,
    private readonly onRequest: (r: NbdRequest) => void,
  ) {}

  push(chunk: Buffer): void {
    this.failure.run("NBD request parser", () => this.consume(chunk));
  }

  private consume(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const cur = this.current;
      if (cur?.payload) {
        const take = Math.min(cur.length - this.payloadHave, chunk.length - pos);
        chunk.copy(cur.payload, this.payloadHave, pos, pos + take);
        this.payloadHave += take;
        pos += take;
        if (this.payloadHave === cur.length) this.emit();
        continue;
      }
      const take = Math.min(REQUEST_HEADER_SIZE - this.have, chunk.length - pos);
      chunk.copy(this.hdr, this.have, pos, pos + take);
      this.have += take;
      pos += take;
      if (this.have < REQUEST_HEADER_SIZE) continue;
      const magic = this.hdr.readUInt32BE(0);
      if (magic !== NBD_REQUEST_MAGIC) {
        throw new CairnError("protocol", `bad NBD request magic 0x${magic.toString(16).padStart(8, "0")}`);
      }
      const type = this.hdr.readUInt16BE(6);
      const length = this.hdr.readUInt32BE(24);
      const req: NbdRequest = {
        flags: this.hdr.readUInt16BE(4),
        type,
        handle: Buffer.from(this.hdr.subarray(8, 16)),
        offset: readU64(this.hdr, 16, "request offset"),
        length,
        payload: undefined,
      };
      if (type === NBD_CMD_WRITE && length > 0) {
        if (length > this.maxPayload) {
          throw new CairnError(
            "protocol",
            `NBD write of ${length} bytes exceeds the ${this.maxPayload}-byte maximum`,
          );
        }
        req.payload = Buffer.allocUnsafe(length);
        this.current = req;
        this.payloadHave = 0;
      } else {
        this.current = req;
        this.emit();
      }
    }
  }

  private emit(): void {
    const r = this.current!;
    this.current = undefined;
    this.have = 0;
    this.payloadHave = 0;
    this.onRequest(r);
  }
}
