import type { DomainEvent } from "../../../shared/src/gen/cairn/v1/coordinator.js";

/**
 * What libvirt's event stream already told the coordinator, so the inventory poll (the backstop
 * for a stream that missed something) does not report the same change again, untyped.
 *
 * A polled event is dropped when the stream's latest event for that domain left it in the state
 * the poll found: the coordinator heard of that change already, with libvirt's kind and detail.
 * Every other polled event goes out (the stream missed it or has not delivered it yet).
 */
export class StreamedStates {
  private readonly latest = new Map<string, { state: string; atMs: number }>();

  /** A streamed event was sent: `atMs` is the agent's clock when it was. */
  record(uuid: string, state: string, atMs: number): void {
    this.latest.set(uuid, { state, atMs });
  }

  /**
   * The polled events worth sending. `pollStartedMs` is when the poll's inventory was asked for:
   * streamed events older than that are consumed by this poll; newer ones wait for the next, since
   * this inventory may predate them.
   */
  filter(polled: readonly DomainEvent[], pollStartedMs: number): DomainEvent[] {
    const out = polled.filter((e) => this.latest.get(e.domainUuid)?.state !== e.state);
    for (const [uuid, s] of this.latest) if (s.atMs < pollStartedMs) this.latest.delete(uuid);
    return out;
  }
}
