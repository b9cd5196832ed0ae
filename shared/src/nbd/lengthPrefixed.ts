import { CairnError } from "../errors/CairnError.js";
import { MAX_STRING_LENGTH } from "./constants.js";

/** An NBD string on the wire: u32 byte length, then UTF-8 (export names, meta contexts). */
export function lengthPrefixed(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  if (b.length > MAX_STRING_LENGTH) {
    throw new CairnError("invalid-argument", `NBD name longer than ${MAX_STRING_LENGTH} bytes`);
  }
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}
