import { compress, decompress } from "zstd-napi";
import { CairnError } from "../../errors/CairnError.js";

/**
 * Small files kept inside a manifest (format §7.1): zstd, then base64. An NVRAM store is mostly
 * padding, so its 540 KiB become a few KiB of manifest text (and of memory when listing snapshots).
 */
export function encodeInlineBlob(data: Uint8Array, level = 3): string {
  return Buffer.from(compress(data, { compressionLevel: level })).toString("base64");
}

/** Inverse of encodeInlineBlob; `what` names the file for the `corrupt` error. */
export function decodeInlineBlob(text: string, what: string): Buffer {
  try {
    return Buffer.from(decompress(Buffer.from(text, "base64")));
  } catch (e) {
    throw new CairnError("corrupt", `${what} is corrupt: zstd decompression failed`, { cause: e });
  }
}
