import { CairnError } from "../errors/CairnError.js";

const TWO_32 = 0x1_0000_0000;

/**
 * Reads a big-endian u64 as a number. Values >= 2^53 cannot be offsets or sizes of any real disk,
 * so they are rejected as a protocol error rather than rounded (see constants.ts, numbers policy).
 */
export function readU64(buf: Buffer, at: number, what: string): number {
  const hi = buf.readUInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  if (hi >= 0x200000) {
    throw new CairnError(
      "protocol",
      `NBD peer sent ${what} >= 2^53 (0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")})`,
    );
  }
  return hi * TWO_32 + lo;
}

/** Writes a non-negative safe integer as a big-endian u64 without going through bigint. */
export function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}
