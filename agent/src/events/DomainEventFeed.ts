import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { DomainEventSource, LifecycleEvent } from "./DomainEventSource.js";

/** A lifecycle event with the domain's uuid and its state after the event: what the agent reports. */
export interface ResolvedDomainEvent {
  domainUuid: string;
  domainName: string;
  kind: LifecycleEvent["kind"];
  detail: string;
  timestampMs: number;
  /** libvirt's state after the event; "" when the domain is gone. */
  state: string;
}

export interface DomainEventFeedDeps {
  source: DomainEventSource;
  hypervisor: Hypervisor;
  log: Logger;
}

/**
 * The event source's events with their domain's uuid (libvirt's stream names domains only) and the
 * state they leave. Names resolve through a cache fed by inventories (`remember`), and by a lookup
 * for a name the cache lacks (a domain that just arrived by migration). Events keep libvirt's order.
 */
export class DomainEventFeed {
  private readonly uuidByName = new Map<string, string>();

  constructor(private readonly deps: DomainEventFeedDeps) {}

  /** Names seen in an inventory (the poller's, or the registration's). */
  remember(domains: readonly Pick<DomainInfo, "uuid" | "name">[]): void {
    for (const d of domains) this.uuidByName.set(d.name, d.uuid);
  }

  async run(
    onEvent: (e: ResolvedDomainEvent) => void,
    signal: AbortSignal,
    opts: { onConnected?: () => void } = {},
  ): Promise<void> {
    // Resolution is async (a virsh call for an unknown name): one chain keeps libvirt's order.
    let chain = Promise.resolve();
    const onRaw = (e: LifecycleEvent) => {
      chain = chain.then(async () => {
        try {
          const resolved = await this.resolve(e, signal);
          if (resolved) onEvent(resolved);
        } catch (err) {
          if (!signal.aborted)
            this.deps.log.warn({ err, event: e }, "could not resolve a libvirt event's domain");
        }
      });
    };
    const onConnected = () => {
      // Names of domains defined while no listener ran: fill the cache before they are needed.
      chain = chain.then(async () => {
        try {
          this.remember(await this.deps.hypervisor.listDomains(signal));
        } catch {
          // the lookup per unknown name still works
        }
        opts.onConnected?.();
      });
    };
    await this.deps.source.run(onRaw, signal, { onConnected });
    await chain;
  }

  private async resolve(e: LifecycleEvent, signal: AbortSignal): Promise<ResolvedDomainEvent | undefined> {
    let uuid = this.uuidByName.get(e.domainName);
    let state: string | undefined = e.state;
    // Defined and undefined say nothing about the state: ask (a running domain can be redefined,
    // or undefined and stay running as a transient one). The lookup also names unknown domains.
    if (!uuid || state === undefined) {
      // While libvirt removes a domain a lookup can fail outright (not only "not found"): for an
      // undefine that means gone; anything else is worth the warning the caller logs.
      const d = await this.deps.hypervisor.domain(e.domainName, signal).catch((err: unknown) => {
        if (e.kind === "undefined" && uuid) return undefined;
        throw err;
      });
      if (d) {
        uuid = d.uuid;
        this.uuidByName.set(d.name, d.uuid);
        state ??= d.state;
      } else state ??= "";
    }
    if (e.kind === "undefined" && state === "") this.uuidByName.delete(e.domainName);
    if (!uuid) {
      this.deps.log.warn({ event: e }, "libvirt event for a domain this agent never saw; not reported");
      return undefined;
    }
    return {
      domainUuid: uuid,
      domainName: e.domainName,
      kind: e.kind,
      detail: e.detail,
      timestampMs: e.timestampMs,
      state,
    };
  }
}
