import type { LifecycleEvent } from "./parseVirshEvent.js";

export type { LifecycleEvent };

/**
 * Port: the hypervisor's own stream of domain lifecycle events.
 *
 * Contract:
 * - `run` delivers every lifecycle event of every domain on this host, in the hypervisor's order,
 *   until `signal` fires; then it stops listening (no process or connection left behind) and
 *   resolves. It never rejects for a broken connection: it reconnects with a backoff, and events
 *   during the gap are lost (inventory polling is the backstop).
 * - `onEvent` is called synchronously, one event at a time; it must not throw.
 * - `onConnected`, when given, is called each time the source (re)starts listening.
 */
export interface DomainEventSource {
  run(
    onEvent: (e: LifecycleEvent) => void,
    signal: AbortSignal,
    opts?: { onConnected?: () => void },
  ): Promise<void>;
}
