import { CairnError } from "../errors/CairnError.js";
import type { HandshakeIo } from "./ClientHandshake.js";
import * as nbd from "./constants.js";
import { lengthPrefixed } from "./lengthPrefixed.js";
import { writeU64 } from "./u64.js";

/** What the server needs to know about an export during the handshake. */
export interface ExportDescription {
  size: number;
  /** Transmission flags to advertise. */
  flags: number;
  minBlock: number;
  preferredBlock: number;
  maxPayload: number;
  /** Names served as qemu:dirty-bitmap:NAME (none when absent). */
  dirtyBitmaps?: readonly string[];
}

export interface HandshakeOutcome {
  exportName: string;
  structured: boolean;
  /** True when base:allocation was selected with SET_META_CONTEXT (context id BASE_ALLOCATION_ID). */
  baseAllocation: boolean;
  /** The bitmap selected as qemu:dirty-bitmap:NAME (context id DIRTY_BITMAP_ID), if any. */
  dirtyBitmap?: string | undefined;
}

export const BASE_ALLOCATION_ID = 1;
export const DIRTY_BITMAP_ID = 2;

export interface ServerHandshakeOptions {
  exports: ReadonlyMap<string, ExportDescription>;
  /** Set when TLS is required: every option but STARTTLS/ABORT gets ERR_TLS_REQD until upgraded. */
  tlsRequired: boolean;
  /** Performs the TLS upgrade after we ACK STARTTLS; absent when the server has no credentials. */
  startTls?: () => Promise<HandshakeIo>;
}

/**
 * The server side of the fixed newstyle handshake. Returns the outcome when the client sends GO
 * or EXPORT_NAME, or undefined when it aborted. Throws CairnError("protocol") for clients that
 * violate the protocol (oversized options, too many options, unknown client flags); the caller
 * then closes the connection. Option lengths and counts are capped.
 */
export async function serverHandshake(
  initialIo: HandshakeIo,
  opts: ServerHandshakeOptions,
): Promise<HandshakeOutcome | undefined> {
  let io = initialIo;
  let tls = false;
  const g = Buffer.alloc(18);
  g.writeBigUInt64BE(nbd.NBD_MAGIC, 0);
  g.writeBigUInt64BE(nbd.NBD_IHAVEOPT, 8);
  g.writeUInt16BE(nbd.NBD_FLAG_FIXED_NEWSTYLE | nbd.NBD_FLAG_NO_ZEROES, 16);
  io.write(g);
  const clientFlags = (await io.source.read(4, io.signal)).readUInt32BE(0);
  if ((clientFlags & ~(nbd.NBD_FLAG_C_FIXED_NEWSTYLE | nbd.NBD_FLAG_C_NO_ZEROES)) !== 0) {
    throw new CairnError("protocol", `NBD client sent unknown flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & nbd.NBD_FLAG_C_NO_ZEROES) !== 0;
  let structured = false;
  let metaExport: string | undefined;
  let metaBase = false;
  let metaDirty: string | undefined;

  const negotiated = (name: string) => ({
    baseAllocation: metaExport === name && metaBase,
    dirtyBitmap: metaExport === name ? metaDirty : undefined,
  });
  const reply = (opt: number, type: number, data: Buffer = Buffer.alloc(0)) => {
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(nbd.NBD_REP_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(data.length, 16);
    io.write(data.length ? Buffer.concat([h, data]) : h);
  };

  for (let n = 0; n < nbd.MAX_OPTIONS_PER_HANDSHAKE; n++) {
    const h = await io.source.read(16, io.signal);
    if (h.readBigUInt64BE(0) !== nbd.NBD_IHAVEOPT)
      throw new CairnError("protocol", "bad NBD option magic from client");
    const opt = h.readUInt32BE(8);
    const len = h.readUInt32BE(12);
    if (len > nbd.MAX_OPTION_LENGTH)
      throw new CairnError("protocol", `NBD client option of ${len} bytes is too large`);
    const data = len ? Buffer.from(await io.source.read(len, io.signal)) : Buffer.alloc(0);

    if (opts.tlsRequired && !tls && opt !== nbd.NBD_OPT_STARTTLS && opt !== nbd.NBD_OPT_ABORT) {
      if (opt === nbd.NBD_OPT_EXPORT_NAME)
        throw new CairnError("unauthenticated", "NBD client skipped required TLS");
      reply(opt, nbd.NBD_REP_ERR_TLS_REQD, Buffer.from("TLS is required"));
      continue;
    }
    switch (opt) {
      case nbd.NBD_OPT_ABORT:
        reply(opt, nbd.NBD_REP_ACK);
        return undefined;
      case nbd.NBD_OPT_STARTTLS:
        if (!opts.startTls) reply(opt, nbd.NBD_REP_ERR_POLICY, Buffer.from("TLS not configured"));
        else if (tls || len) reply(opt, nbd.NBD_REP_ERR_INVALID);
        else {
          reply(opt, nbd.NBD_REP_ACK);
          io = await opts.startTls();
          tls = true;
        }
        break;
      case nbd.NBD_OPT_LIST:
        if (len) {
          reply(opt, nbd.NBD_REP_ERR_INVALID);
          break;
        }
        for (const name of opts.exports.keys()) reply(opt, nbd.NBD_REP_SERVER, lengthPrefixed(name));
        reply(opt, nbd.NBD_REP_ACK);
        break;
      case nbd.NBD_OPT_STRUCTURED_REPLY:
        if (len) reply(opt, nbd.NBD_REP_ERR_INVALID);
        else {
          structured = true;
          reply(opt, nbd.NBD_REP_ACK);
        }
        break;
      case nbd.NBD_OPT_LIST_META_CONTEXT:
      case nbd.NBD_OPT_SET_META_CONTEXT: {
        const parsed = parseMetaRequest(data);
        if (!structured || !parsed) {
          reply(opt, nbd.NBD_REP_ERR_INVALID);
          break;
        }
        const set = opt === nbd.NBD_OPT_SET_META_CONTEXT;
        if (set) {
          metaExport = undefined;
          metaBase = false;
          metaDirty = undefined;
        }
        const ex = opts.exports.get(parsed.exportName);
        const context = (id: number, name: string) => {
          const d = Buffer.alloc(4 + Buffer.byteLength(name));
          d.writeUInt32BE(id, 0);
          d.write(name, 4);
          reply(opt, nbd.NBD_REP_META_CONTEXT, d);
        };
        const wants = parsed.queries.some((q) => q === nbd.BASE_ALLOCATION || (!set && q === "base:"));
        if ((wants || (!set && parsed.queries.length === 0)) && ex) {
          context(BASE_ALLOCATION_ID, nbd.BASE_ALLOCATION);
          if (set) {
            metaExport = parsed.exportName;
            metaBase = true;
          }
        }
        // One dirty bitmap per connection, as a backup reader uses it (a LIST may ask for the prefix).
        const dirty = ex?.dirtyBitmaps?.find((b) =>
          parsed.queries.some(
            (q) =>
              q === nbd.QEMU_DIRTY_BITMAP_PREFIX + b ||
              (!set && (q === nbd.QEMU_DIRTY_BITMAP_PREFIX || q === "qemu:")),
          ),
        );
        if (dirty !== undefined) {
          context(DIRTY_BITMAP_ID, nbd.QEMU_DIRTY_BITMAP_PREFIX + dirty);
          if (set) {
            metaExport = parsed.exportName;
            metaDirty = dirty;
          }
        }
        reply(opt, nbd.NBD_REP_ACK);
        break;
      }
      case nbd.NBD_OPT_INFO:
      case nbd.NBD_OPT_GO: {
        const name = parseInfoRequest(data);
        if (name === undefined) {
          reply(opt, nbd.NBD_REP_ERR_INVALID);
          break;
        }
        const ex = opts.exports.get(name);
        if (!ex) {
          reply(opt, nbd.NBD_REP_ERR_UNKNOWN, Buffer.from(`no export named "${name}"`));
          break;
        }
        const info = Buffer.alloc(12);
        info.writeUInt16BE(nbd.NBD_INFO_EXPORT, 0);
        writeU64(info, ex.size, 2);
        info.writeUInt16BE(ex.flags, 10);
        reply(opt, nbd.NBD_REP_INFO, info);
        const bs = Buffer.alloc(14);
        bs.writeUInt16BE(nbd.NBD_INFO_BLOCK_SIZE, 0);
        bs.writeUInt32BE(ex.minBlock, 2);
        bs.writeUInt32BE(ex.preferredBlock, 6);
        bs.writeUInt32BE(ex.maxPayload, 10);
        reply(opt, nbd.NBD_REP_INFO, bs);
        reply(opt, nbd.NBD_REP_ACK);
        if (opt === nbd.NBD_OPT_GO) return { exportName: name, structured, ...negotiated(name) };
        break;
      }
      case nbd.NBD_OPT_EXPORT_NAME: {
        const name = data.toString("utf8");
        const ex = opts.exports.get(name);
        if (!ex) throw new CairnError("not-found", `NBD client asked for unknown export "${name}"`);
        const d = Buffer.alloc(noZeroes ? 10 : 134);
        writeU64(d, ex.size, 0);
        d.writeUInt16BE(ex.flags, 8);
        io.write(d);
        return { exportName: name, structured, ...negotiated(name) };
      }
      default:
        reply(opt, nbd.NBD_REP_ERR_UNSUP);
    }
  }
  throw new CairnError("protocol", `NBD client sent more than ${nbd.MAX_OPTIONS_PER_HANDSHAKE} options`);
}

function parseInfoRequest(d: Buffer): string | undefined {
  if (d.length < 6) return undefined;
  const n = d.readUInt32BE(0);
  if (n > nbd.MAX_STRING_LENGTH || 4 + n + 2 > d.length) return undefined;
  const count = d.readUInt16BE(4 + n);
  if (d.length !== 4 + n + 2 + 2 * count) return undefined;
  return d.toString("utf8", 4, 4 + n);
}

function parseMetaRequest(d: Buffer): { exportName: string; queries: string[] } | undefined {
  if (d.length < 8) return undefined;
  const n = d.readUInt32BE(0);
  if (n > nbd.MAX_STRING_LENGTH || 4 + n + 4 > d.length) return undefined;
  const exportName = d.toString("utf8", 4, 4 + n);
  const count = d.readUInt32BE(4 + n);
  const queries: string[] = [];
  let at = 8 + n;
  for (let i = 0; i < count; i++) {
    if (at + 4 > d.length) return undefined;
    const q = d.readUInt32BE(at);
    if (q > nbd.MAX_STRING_LENGTH || at + 4 + q > d.length) return undefined;
    queries.push(d.toString("utf8", at + 4, at + 4 + q));
    at += 4 + q;
  }
  return at === d.length ? { exportName, queries } : undefined;
}
