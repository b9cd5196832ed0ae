import type { DomainEventSource, LifecycleEvent } from "../../../agent/src/events/DomainEventSource.js";

/** In-memory DomainEventSource: tests emit events; `run` delivers them until its signal fires. */
export class FakeDomainEventSource implements DomainEventSource {
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();

  async run(
    onEvent: (e: LifecycleEvent) => void,
    signal: AbortSignal,
    opts: { onConnected?: () => void } = {},
  ): Promise<void> {
    if (signal.aborted) return;
    this.listeners.add(onEvent);
    opts.onConnected?.();
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    this.listeners.delete(onEvent);
  }

  /** Delivers one event to every running listener. */
  emit(e: Omit<LifecycleEvent, "timestampMs" | "state"> & Partial<LifecycleEvent>): void {
    const ev: LifecycleEvent = { timestampMs: Date.now(), state: undefined, ...e };
    for (const l of this.listeners) l(ev);
  }

  get listening(): number {
    return this.listeners.size;
  }
}
