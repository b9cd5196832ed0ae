import { CairnError, type CairnErrorCode } from "../errors/CairnError.js";
import type { ByteSource } from "./ByteReader.js";
import {
  DEFAULT_MAX_PAYLOAD,
  MAX_OPTION_LENGTH,
  MAX_OPTION_REPLIES,
  MAX_STRING_LENGTH,
  NBD_CLISERV_MAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPTION_REPLY_HEADER_SIZE,
} from "./constants.js";
import { lengthPrefixed } from "./lengthPrefixed.js";
import { readU64 } from "./u64.js";

/** What NBD_OPT_GO told us about the export. */
export interface ExportInfo {
  size: number;
  /** Transmission flags (NBD_FLAG_*). */
  flags: number;
  /** From NBD_INFO_BLOCK_SIZE, or spec defaults (1 / 4096 / 32 MiB) when the server sent none. */
  minBlock: number;
  preferredBlock: number;
  maxPayload: number;
}

export interface HandshakeIo {
  source: ByteSource;
  write(data: Buffer): void;
  signal?: AbortSignal;
}

/**
 * The client side of the fixed newstyle handshake (proto.md "Handshake phase"), one method per
 * option. `io` may be swapped after STARTTLS. Every reply length and reply count is capped, so a
 * hostile server can neither make us allocate without bound nor keep us in an option forever.
 */
export class ClientHandshake {
  constructor(
    public io: HandshakeIo,
    private readonly peer: string,
  ) {}

  /** Reads the greeting and sends client flags. */
  async greet(): Promise<void> {
    const g = await this.read(18);
    if (g.readBigUInt64BE(0) !== NBD_MAGIC) throw this.protocol("peer is not an NBD server (bad NBDMAGIC)");
    const second = g.readBigUInt64BE(8);
    if (second === NBD_CLISERV_MAGIC) {
      throw new CairnError("unimplemented", `${this.peer} speaks oldstyle NBD, which Cairn does not support`);
    }
    if (second !== NBD_IHAVEOPT) throw this.protocol("bad IHAVEOPT magic in NBD greeting");
    const flags = g.readUInt16BE(16);
    if ((flags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
      throw new CairnError("unimplemented", `${this.peer} does not support fixed newstyle NBD`);
    }
    const c = Buffer.alloc(4);
    c.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | (flags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    this.io.write(c);
  }

  /** NBD_OPT_STARTTLS; on return the caller must upgrade the socket to TLS and replace `io`. */
  async startTls(): Promise<void> {
    this.sendOption(NBD_OPT_STARTTLS, Buffer.alloc(0));
    const r = await this.readReply(NBD_OPT_STARTTLS);
    if (r.type !== NBD_REP_ACK) throw this.unexpected(NBD_OPT_STARTTLS, r.type);
  }

  async structuredReplies(): Promise<void> {
    this.sendOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const r = await this.readReply(NBD_OPT_STRUCTURED_REPLY);
    if (r.type !== NBD_REP_ACK) throw this.unexpected(NBD_OPT_STRUCTURED_REPLY, r.type);
  }

  /** SET (or LIST) meta contexts; returns name → context id for those the server accepted. */
  async metaContexts(
    exportName: string,
    queries: readonly string[],
    list = false,
  ): Promise<Map<string, number>> {
    const opt = list ? NBD_OPT_LIST_META_CONTEXT : NBD_OPT_SET_META_CONTEXT;
    const parts: Buffer[] = [lengthPrefixed(exportName), u32(queries.length)];
    for (const q of queries) parts.push(lengthPrefixed(q));
    this.sendOption(opt, Buffer.concat(parts));
    const out = new Map<string, number>();
    for (let i = 0; i < MAX_OPTION_REPLIES; i++) {
      const r = await this.readReply(opt);
      if (r.type === NBD_REP_ACK) return out;
      if (r.type !== NBD_REP_META_CONTEXT || r.data.length < 4) throw this.unexpected(opt, r.type);
      out.set(r.data.toString("utf8", 4), r.data.readUInt32BE(0));
    }
    throw this.protocol(`NBD server sent more than ${MAX_OPTION_REPLIES} meta context replies`);
  }

  async list(): Promise<{ name: string; description: string }[]> {
    this.sendOption(NBD_OPT_LIST, Buffer.alloc(0));
    const out: { name: string; description: string }[] = [];
    for (let i = 0; i < MAX_OPTION_REPLIES; i++) {
      const r = await this.readReply(NBD_OPT_LIST);
      if (r.type === NBD_REP_ACK) return out;
      if (r.type !== NBD_REP_SERVER || r.data.length < 4) throw this.unexpected(NBD_OPT_LIST, r.type);
      const n = r.data.readUInt32BE(0);
      if (n > r.data.length - 4) throw this.protocol("NBD_REP_SERVER name overruns the reply");
      out.push({ name: r.data.toString("utf8", 4, 4 + n), description: r.data.toString("utf8", 4 + n) });
    }
    throw this.protocol(`NBD server sent more than ${MAX_OPTION_REPLIES} export list replies`);
  }

  async go(exportName: string): Promise<ExportInfo> {
    const req = Buffer.concat([lengthPrefixed(exportName), u16(1), u16(NBD_INFO_BLOCK_SIZE)]);
    this.sendOption(NBD_OPT_GO, req);
    let size: number | undefined;
    let flags = 0;
    let minBlock = 1;
    let preferredBlock = 4096;
    let maxPayload = DEFAULT_MAX_PAYLOAD;
    for (let i = 0; i < MAX_OPTION_REPLIES; i++) {
      const r = await this.readReply(NBD_OPT_GO);
      if (r.type === NBD_REP_ACK) {
        if (size === undefined) throw this.protocol("NBD server acknowledged GO without NBD_INFO_EXPORT");
        return { size, flags, minBlock, preferredBlock, maxPayload };
      }
      if (r.type !== NBD_REP_INFO || r.data.length < 2) throw this.unexpected(NBD_OPT_GO, r.type);
      const info = r.data.readUInt16BE(0);
      if (info === NBD_INFO_EXPORT) {
        if (r.data.length !== 12) throw this.protocol("NBD_INFO_EXPORT has the wrong length");
        size = readU64(r.data, 2, "export size");
        flags = r.data.readUInt16BE(10);
      } else if (info === NBD_INFO_BLOCK_SIZE) {
        if (r.data.length !== 14) throw this.protocol("NBD_INFO_BLOCK_SIZE has the wrong length");
        minBlock = r.data.readUInt32BE(2);
        preferredBlock = r.data.readUInt32BE(6);
        maxPayload = r.data.readUInt32BE(10);
        if (minBlock < 1 || maxPayload < minBlock || preferredBlock < minBlock) {
          throw this.protocol(
            `NBD server sent nonsensical block sizes ${minBlock}/${preferredBlock}/${maxPayload}`,
          );
        }
      }
      // NAME, DESCRIPTION and unknown infos are ignored, as the spec asks.
    }
    throw this.protocol(`NBD server sent more than ${MAX_OPTION_REPLIES} replies to GO`);
  }

  /** NBD_OPT_ABORT: polite goodbye during the handshake (used after LIST). */
  async abort(): Promise<void> {
    this.sendOption(NBD_OPT_ABORT, Buffer.alloc(0));
  }

  private sendOption(opt: number, data: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(NBD_IHAVEOPT, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.io.write(data.length ? Buffer.concat([h, data]) : h);
  }

  private async readReply(opt: number): Promise<{ type: number; data: Buffer }> {
    const h = await this.read(OPTION_REPLY_HEADER_SIZE);
    if (h.readBigUInt64BE(0) !== NBD_REP_MAGIC) throw this.protocol("bad NBD option reply magic");
    const replyOpt = h.readUInt32BE(8);
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (replyOpt !== opt) throw this.protocol(`NBD server answered option ${replyOpt}, expected ${opt}`);
    if (len > MAX_OPTION_LENGTH) throw this.protocol(`NBD option reply of ${len} bytes exceeds our cap`);
    const data = len ? Buffer.from(await this.read(len)) : Buffer.alloc(0);
    if ((type & NBD_REP_FLAG_ERROR) !== 0) throw this.optionError(opt, type, data);
    return { type, data };
  }

  private read(n: number): Promise<Buffer> {
    return this.io.source.read(n, this.io.signal);
  }

  private optionError(opt: number, type: number, data: Buffer): CairnError {
    const text = data.toString("utf8", 0, Math.min(data.length, MAX_STRING_LENGTH));
    const codes: Record<number, [CairnErrorCode, string]> = {
      [NBD_REP_ERR_UNSUP]: ["unimplemented", "unsupported"],
      [NBD_REP_ERR_POLICY]: ["permission-denied", "forbidden by policy"],
      [NBD_REP_ERR_TLS_REQD]: ["failed-precondition", "TLS required"],
      [NBD_REP_ERR_UNKNOWN]: ["not-found", "unknown export"],
      [NBD_REP_ERR_SHUTDOWN]: ["unavailable", "server shutting down"],
    };
    const [code, what] = codes[type] ?? ["failed-precondition", `error 0x${type.toString(16)}`];
    return new CairnError(
      code,
      `NBD server ${this.peer} refused option ${opt}: ${what}${text ? ` (${text})` : ""}`,
      {
        details: { option: opt, replyType: type },
        ...(type === NBD_REP_ERR_TLS_REQD ? { hint: "connect with TLS credentials" } : {}),
      },
    );
  }

  private unexpected(opt: number, type: number): CairnError {
    return this.protocol(`NBD server sent unexpected reply type ${type} to option ${opt}`);
  }

  private protocol(message: string): CairnError {
    return new CairnError("protocol", `${message} (${this.peer})`);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
