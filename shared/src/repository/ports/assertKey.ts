import { CairnError } from "../../errors/CairnError.js";
import { isValidKey } from "./ObjectStore.js";

/** Rejects keys outside the port's key grammar, so no adapter can be steered outside its root. */
export function assertKey(key: string, location: string): void {
  if (!isValidKey(key)) {
    throw new CairnError(
      "invalid-argument",
      `invalid object key ${JSON.stringify(key)} for repository ${location}`,
    );
  }
}

/** Same grammar for list prefixes, which may be empty or end in `/`. */
export function assertPrefix(prefix: string, location: string): void {
  if (prefix === "") return;
  const trimmed = prefix.endsWith("/") ? prefix.slice(0, -1) : prefix;
  assertKey(trimmed, location);
}
