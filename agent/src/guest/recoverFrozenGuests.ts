import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { FreezeMarkers } from "./FreezeMarkers.js";
import type { GuestAgent } from "./GuestAgent.js";

/**
 * On agent start: thaw every guest this agent froze and did not confirm thawed (a crash or kill -9
 * between freeze and thaw). A domain that no longer exists or is not running needs nothing.
 * Returns the domains thawed.
 */
export async function recoverFrozenGuests(
  agent: GuestAgent,
  markers: FreezeMarkers,
  log: Logger,
  opts: { timeoutMs: number; signal: AbortSignal },
): Promise<string[]> {
  const thawed: string[] = [];
  for (const m of await markers.list()) {
    try {
      const n = await agent.thaw(m.domain, opts);
      log.warn(
        { domain: m.domain, frozenAt: m.frozenAt, thawed: n },
        "thawed a guest left frozen by an earlier run",
      );
      thawed.push(m.domain);
      await markers.remove(m.domain);
    } catch (err) {
      if (isCairnError(err, "not-found") || isCairnError(err, "unavailable")) {
        // Gone, or shut off (its agent cannot answer, and a stopped guest is not frozen).
        log.info(
          { domain: m.domain, err: (err as Error).message },
          "frozen marker for an unreachable guest dropped",
        );
        await markers.remove(m.domain);
        continue;
      }
      log.error({ domain: m.domain, err }, "could not thaw a guest left frozen; will retry on next start");
    }
  }
  return thawed;
}
