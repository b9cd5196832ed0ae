/** Exponential backoff with full jitter: uniform in [0, min(max, base·2^(attempt-1))], at least 1 ms. */
export function retryDelayMs(
  attempt: number,
  opts: { baseMs: number; maxMs: number },
  random: () => number,
): number {
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  return Math.max(1, Math.floor(random() * cap));
}
