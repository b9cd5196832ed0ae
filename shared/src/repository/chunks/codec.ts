import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from "node:crypto";
import { decompress } from "zstd-napi";
import zstd from "zstd-napi/binding.js";
import { CairnError } from "../../errors/CairnError.js";
import type { RepositoryKeys } from "../crypto/RepositoryKeys.js";

/** The kinds of framed object; the kind is bound into the AEAD so objects cannot be swapped. */
export type ObjectKind = "chunk" | "index" | "snapshot" | "packindex";

/** Unencrypted frames, and encrypted ones written before the header was authenticated (format §5). */
const FRAME_VERSION = 1;
/** Encrypted frames whose header (version, flags) is part of the AEAD's associated data (format §5). */
const FRAME_VERSION_SEALED = 2;
const FLAG_ZSTD = 1;
const FLAG_AES = 2;
const FLAG_PAD = 4;
const KNOWN_FLAGS = FLAG_ZSTD | FLAG_AES | FLAG_PAD;

/** Content id: SHA-256, or HMAC-SHA-256 with the id key in an encrypted repository. */
export function contentId(data: Uint8Array, keys: RepositoryKeys | undefined): string {
  return (keys ? createHmac("sha256", keys.idKey) : createHash("sha256")).update(data).digest("hex");
}

const ZERO_PAGE = Buffer.alloc(64 * 1024);

/** True if every byte is zero (compares 64 KiB at a time against a zero page: memcmp speed). */
export function isAllZero(data: Uint8Array): boolean {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < b.length; off += ZERO_PAGE.length) {
    const n = Math.min(ZERO_PAGE.length, b.length - off);
    if (!b.subarray(off, off + n).equals(n === ZERO_PAGE.length ? ZERO_PAGE : ZERO_PAGE.subarray(0, n)))
      return false;
  }
  return true;
}

const SAMPLE = 4096;

/**
 * One zstd context per level, set up once, writing into a scratch buffer kept with it. zstd-napi's
 * Compressor re-applies its parameters on every call (11 of 35 µs per chunk's three samples,
 * docs/field-notes.md) and allocates a fresh output buffer for each output it cannot shrink: for the
 * samples of incompressible chunks that was ~0.7 of a chunk worker's ~4 CPU-s per 2 GiB
 * (createUnsafeBuffer in a CPU profile; docs/field-notes.md). Each worker thread has its own module
 * instance, so nothing is shared between threads.
 */
interface Zstd {
  cctx: zstd.CCtx;
  scratch: Buffer;
}
const contexts = new Map<number, Zstd>();
function zstdFor(level: number): Zstd {
  let z = contexts.get(level);
  if (!z) {
    const cctx = new zstd.CCtx();
    cctx.setParameter(zstd.CParameter.compressionLevel, level);
    z = { cctx, scratch: Buffer.allocUnsafeSlow(0) };
    contexts.set(level, z);
  }
  return z;
}

/** Scratch kept per level at most: a 2 TiB disk's index (~256 MiB) is compressed into its own buffer. */
const SCRATCH_MAX_BYTES = 4 * 1024 * 1024;

/** zstd of `src` at `level`, into the level's scratch buffer when it fits there. */
function compressToScratch(
  level: number,
  src: Uint8Array,
): { out: Buffer; length: number; scratch: boolean } {
  const z = zstdFor(level);
  const bound = zstd.compressBound(src.length);
  if (bound > SCRATCH_MAX_BYTES) {
    const out = Buffer.allocUnsafeSlow(bound);
    return { out, length: z.cctx.compress2(out, src), scratch: false };
  }
  if (z.scratch.length < bound) z.scratch = Buffer.allocUnsafeSlow(bound);
  return { out: z.scratch, length: z.cctx.compress2(z.scratch, src), scratch: true };
}

/**
 * A cheap test before compressing a whole chunk: three 4 KiB samples (start, a third, two thirds)
 * compressed at level 1 must shrink by at least 2%. Incompressible data (encrypted, media, random)
 * then costs 12 KiB of zstd per chunk instead of the whole chunk: in bench:backup's random-data
 * full backup zstd was most of the workers' CPU and saved nothing. Small chunks are compressed
 * outright. The choice changes only the frame's flags, never the chunk's id.
 */
export function looksCompressible(b: Buffer): boolean {
  if (b.length < 16 * SAMPLE) return true;
  let raw = 0;
  let packed = 0;
  for (const at of [0, Math.floor(b.length / 3), Math.floor((2 * b.length) / 3)]) {
    const s = b.subarray(at, at + SAMPLE);
    raw += s.length;
    packed += compressToScratch(1, s).length;
  }
  return packed < raw * 0.98;
}

/** Bytes before the payload of an unencrypted frame (version, flags): see frameInPlace. */
export const FRAME_HEADER_BYTES = 2;

/** zstd of the plaintext if it looks compressible and shrinks, else undefined. */
function compressed(plain: Uint8Array, level: number): Buffer | undefined {
  if (!looksCompressible(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength))) return undefined;
  const { out, length, scratch } = compressToScratch(level, plain);
  if (length >= plain.length) return undefined;
  // The scratch buffer is reused by the next call, and a one-off one may be far larger than its
  // output: copy out of either unless that output fills most of it.
  return scratch || length < 0.75 * out.length
    ? Buffer.from(out.subarray(0, length))
    : out.subarray(0, length);
}

/**
 * The AEAD's associated data for a frame with this header (format §5): version 2 binds the header
 * bytes and the object's name; version 1 (legacy, read only) the name alone.
 */
function associatedData(header: Uint8Array, kind: ObjectKind, id: string): Buffer {
  return header[0] === FRAME_VERSION_SEALED
    ? Buffer.concat([header.subarray(0, 2), Buffer.from(`cairn/2/${kind}/${id}`)])
    : Buffer.from(`cairn/1/${kind}/${id}`);
}

function sealed(
  kind: ObjectKind,
  id: string,
  payload: Uint8Array,
  flags: number,
  keys: RepositoryKeys,
): Buffer {
  const header = Buffer.from([FRAME_VERSION_SEALED, flags | FLAG_AES]);
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", keys.dataKey, nonce);
  c.setAAD(associatedData(header, kind, id));
  return Buffer.concat([header, nonce, c.update(payload), c.final(), c.getAuthTag()]);
}

/** Frames plaintext: zstd if it shrinks, then AES-256-GCM if keys are given (format §5). */
export function frame(
  kind: ObjectKind,
  id: string,
  plain: Uint8Array,
  keys: RepositoryKeys | undefined,
  level: number,
): Buffer {
  const z = compressed(plain, level);
  const flags = z ? FLAG_ZSTD : 0;
  const payload = z ?? plain;
  return keys ? sealed(kind, id, payload, flags, keys) : unsealed(payload, flags);
}

function unsealed(payload: Uint8Array, flags: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out[0] = FRAME_VERSION;
  out[1] = flags;
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * frame() for a plaintext stored at `buf[FRAME_HEADER_BYTES..]`: when the frame is the plaintext
 * itself (no encryption, not compressed) the header goes into the room before it and the frame is
 * made in place — no copy of the chunk — and its length is returned (it starts where `buf` does).
 * With `padTo`, and room for it in buf's memory, that frame is padded to a multiple of `padTo`
 * (format §5) so it can be written with O_DIRECT. Otherwise returns a new framed buffer.
 */
export function frameInPlace(
  kind: ObjectKind,
  id: string,
  buf: Buffer,
  keys: RepositoryKeys | undefined,
  level: number,
  padTo = 0,
): Buffer | number {
  const plain = buf.subarray(FRAME_HEADER_BYTES);
  const z = compressed(plain, level);
  if (keys) return sealed(kind, id, z ?? plain, z ? FLAG_ZSTD : 0, keys);
  if (z) return unsealed(z, FLAG_ZSTD);
  buf[0] = FRAME_VERSION;
  buf[1] = 0;
  if (padTo <= 0 || buf.length % padTo === 0 || padTo > 0x10000) return buf.length;
  const total = Math.ceil((buf.length + 2) / padTo) * padTo;
  if (buf.byteOffset + total > buf.buffer.byteLength) return buf.length;
  const padded = Buffer.from(buf.buffer, buf.byteOffset, total);
  padded.fill(0, buf.length, total - 2);
  padded.writeUInt16LE(total - buf.length, total - 2);
  padded[1] = FLAG_PAD;
  return total;
}

/**
 * Opens a frame and checks that the plaintext's id is `id` (format §5). Throws CairnError("corrupt")
 * describing `what` (e.g. "chunk X of snapshot S disk vda at offset N") on any mismatch.
 */
export function unframe(
  kind: ObjectKind,
  id: string,
  framed: Uint8Array,
  keys: RepositoryKeys | undefined,
  what: string,
): Buffer {
  const b = Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength);
  const corrupt = (why: string, cause?: unknown) =>
    new CairnError("corrupt", `${what} is corrupt: ${why}`, {
      cause,
      hint: "run verify --read-data to find every damaged object; restore from another copy of the repository if needed",
      details: { kind, id },
    });
  if (b.length < 2) throw corrupt("object is truncated");
  if (b[0] !== FRAME_VERSION && b[0] !== FRAME_VERSION_SEALED)
    throw corrupt(`unknown frame version ${b[0]} (a newer Cairn may be needed)`);
  const flags = b[1] ?? 0;
  if (flags & ~KNOWN_FLAGS) throw corrupt(`unknown frame flags ${flags} (a newer Cairn may be needed)`);
  if (b[0] === FRAME_VERSION_SEALED && !(flags & FLAG_AES))
    throw corrupt(`frame version ${FRAME_VERSION_SEALED} is only written encrypted, but flags are ${flags}`);
  let payload = b.subarray(2);
  if (flags & FLAG_PAD) {
    const pad = b.length >= 4 ? b.readUInt16LE(b.length - 2) : 0;
    if (flags & FLAG_AES || pad < 2 || 2 + pad > b.length) throw corrupt("bad frame padding");
    payload = b.subarray(2, b.length - pad);
  }
  if (flags & FLAG_AES) {
    if (!keys) throw corrupt("object is encrypted but the repository is not");
    if (payload.length < 28) throw corrupt("encrypted object is truncated");
    try {
      const d = createDecipheriv("aes-256-gcm", keys.dataKey, payload.subarray(0, 12));
      d.setAAD(associatedData(b, kind, id));
      d.setAuthTag(payload.subarray(payload.length - 16));
      payload = Buffer.concat([d.update(payload.subarray(12, payload.length - 16)), d.final()]);
    } catch (e) {
      throw corrupt("authentication failed", e);
    }
  } else if (keys) {
    throw corrupt("object is not encrypted but the repository is");
  }
  let plain: Buffer;
  try {
    plain = flags & FLAG_ZSTD ? decompress(payload) : Buffer.from(payload);
  } catch (e) {
    throw corrupt("zstd decompression failed", e);
  }
  // Snapshot manifests are named, not content-addressed (the AEAD binds their name instead).
  if (kind !== "snapshot" && contentId(plain, keys) !== id) throw corrupt("content does not match its id");
  return plain;
}
