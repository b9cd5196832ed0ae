import type { DomainEvent } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";

const KIND_BY_STATE: Record<string, string> = {
  running: "started",
  shutoff: "stopped",
  shutdown: "stopped",
  crashed: "crashed",
  paused: "paused",
  pmsuspended: "suspended",
};

/** Domain events between two inventories (the agent polls libvirt; events carry the new state). */
export function diffDomains(
  before: ReadonlyMap<string, Pick<DomainInfo, "uuid" | "name" | "state">>,
  after: readonly Pick<DomainInfo, "uuid" | "name" | "state">[],
  nowMs: number,
): DomainEvent[] {
  const events: DomainEvent[] = [];
  const seen = new Set<string>();
  for (const d of after) {
    seen.add(d.uuid);
    const old = before.get(d.uuid);
    if (!old)
      events.push({
        domainUuid: d.uuid,
        domainName: d.name,
        kind: "defined",
        detail: d.state,
        timestampMs: BigInt(nowMs),
        state: d.state,
        fromLibvirt: false,
      });
    else if (old.state !== d.state || old.name !== d.name)
      events.push({
        domainUuid: d.uuid,
        domainName: d.name,
        kind: KIND_BY_STATE[d.state] ?? "changed",
        detail: d.state,
        timestampMs: BigInt(nowMs),
        state: d.state,
        fromLibvirt: false,
      });
  }
  for (const old of before.values())
    if (!seen.has(old.uuid))
      events.push({
        domainUuid: old.uuid,
        domainName: old.name,
        kind: "undefined",
        detail: "",
        timestampMs: BigInt(nowMs),
        state: "",
        fromLibvirt: false,
      });
  return events;
}
