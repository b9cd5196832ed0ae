import { abortError } from "../../errors/CairnError.js";

/** Waits `ms`; an abort rejects at once with CairnError("aborted") saying `what` was waiting. */
export function abortableSleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, what));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal!, what));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
