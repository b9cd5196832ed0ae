import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { FreezeMarkers } from "./FreezeMarkers.js";
import type { GuestAgent } from "./GuestAgent.js";

export interface FreezeOptions {
  domain: string;
  mountpoints?: readonly string[];
  /** Deadline for the freeze call itself. */
  freezeTimeoutMs: number;
  /** Deadline for each thaw attempt. */
  thawTimeoutMs: number;
  /** Watchdog: thaw regardless if the guest stays frozen longer than this. */
  maxFrozenMs: number;
  signal: AbortSignal;
}

/** The freeze window split up: the freeze call, fn while frozen, the thaw call (ms). */
export interface FreezePhases {
  freeze: number;
  hold: number;
  thaw: number;
}

export interface FrozenResult<T> {
  value: T;
  /** From the start of the freeze call to the end of the thaw call, in ms. */
  freezeWindowMs: number;
  frozenFilesystems: number;
  phasesMs: FreezePhases;
  /** The watchdog thawed before fn finished: whatever fn captured may not be application-consistent. */
  watchdogFired: boolean;
}

/**
 * Freeze → fn → thaw, with the thaw guaranteed: in `finally`, by a watchdog if fn stalls, and (through
 * the durable marker written before freezing) by the agent's startup recovery if this process dies.
 * The caller's signal does not cancel the thaw: the thaw always runs.
 */
export async function withFrozenGuest<T>(
  agent: GuestAgent,
  markers: FreezeMarkers,
  log: Logger,
  opts: FreezeOptions,
  fn: () => Promise<T>,
  /** Work that must be done before the freeze; it runs beside the marker's fsync (~20 ms here). */
  beforeFreeze?: () => Promise<void>,
): Promise<FrozenResult<T>> {
  const [marked, prepared] = await Promise.allSettled([markers.add(opts.domain), beforeFreeze?.()]);
  if (marked.status === "rejected" || prepared.status === "rejected") {
    // Nothing was frozen: no thaw, and no marker left to make recovery thaw an unfrozen guest.
    if (marked.status === "fulfilled") await markers.remove(opts.domain).catch(() => {});
    throw marked.status === "rejected" ? marked.reason : (prepared as PromiseRejectedResult).reason;
  }
  const t0 = performance.now();
  let thawPromise: Promise<void> | undefined;
  const thawOnce = (why: string) => {
    thawPromise ??= thawWithRetry(agent, log, opts, why);
    return thawPromise;
  };
  let watchdog: NodeJS.Timeout | undefined;
  let frozenFilesystems = 0;
  let watchdogFired = false;
  try {
    frozenFilesystems = await agent.freeze(opts.domain, {
      signal: opts.signal,
      timeoutMs: opts.freezeTimeoutMs,
      ...(opts.mountpoints ? { mountpoints: opts.mountpoints } : {}),
    });
    const tFrozen = performance.now();
    log.debug({ domain: opts.domain, frozenFilesystems }, "guest frozen");
    watchdog = setTimeout(() => {
      log.warn({ domain: opts.domain, maxFrozenMs: opts.maxFrozenMs }, "freeze watchdog fired: thawing");
      watchdogFired = true;
      thawOnce("watchdog").catch(() => {
        /* logged in thawWithRetry; the finally retries and reports */
      });
    }, opts.maxFrozenMs);
    const value = await fn();
    const tHeld = performance.now();
    await thawOnce("done");
    const tThawed = performance.now();
    const phasesMs: FreezePhases = { freeze: tFrozen - t0, hold: tHeld - tFrozen, thaw: tThawed - tHeld };
    log.info({ domain: opts.domain, freezeWindowMs: tThawed - t0, phasesMs }, "freeze window");
    return { value, freezeWindowMs: tThawed - t0, phasesMs, frozenFilesystems, watchdogFired };
  } finally {
    clearTimeout(watchdog);
    // Also when the freeze call itself failed or timed out: the guest may have frozen anyway.
    await thawOnce("cleanup");
    await markers.remove(opts.domain);
  }
}

async function thawWithRetry(
  agent: GuestAgent,
  log: Logger,
  opts: FreezeOptions,
  why: string,
): Promise<void> {
  // Never the caller's signal: a cancelled job must still leave the guest thawed.
  const signal = new AbortController().signal;
  let lastErr: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      await agent.thaw(opts.domain, { signal, timeoutMs: opts.thawTimeoutMs });
      log.debug({ domain: opts.domain, why }, "guest thawed");
      return;
    } catch (err) {
      lastErr = err;
      log.warn({ domain: opts.domain, attempt, err }, "thaw failed; retrying");
    }
  }
  // Leave the marker in place (the finally's remove runs only after a thaw that did not throw).
  throw lastErr;
}
