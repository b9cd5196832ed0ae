import { abortError } from "../../errors/CairnError.js";

/** Throws CairnError("aborted") if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}
