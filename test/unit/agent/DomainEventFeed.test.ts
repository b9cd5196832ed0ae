import { describe, expect, it } from "vitest";
import { DomainEventFeed, type ResolvedDomainEvent } from "../../../agent/src/events/DomainEventFeed.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { FakeDomainEventSource } from "../../support/fakes/FakeDomainEventSource.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";

const log = createLogger("test", "silent");
const tick = () => new Promise((r) => setTimeout(r, 10));

describe("DomainEventFeed", () => {
  it("names each event's domain by uuid and says its state after the event, in libvirt's order", async () => {
    const source = new FakeDomainEventSource();
    const hv = new FakeHypervisor([{ ...sampleDomain, state: "shutoff" }]);
    const feed = new DomainEventFeed({ source, hypervisor: hv, log });
    const got: ResolvedDomainEvent[] = [];
    const ac = new AbortController();
    const running = feed.run((e) => got.push(e), ac.signal);
    await tick();
    source.emit({ domainName: "web-1", kind: "started", detail: "booted", state: "running" });
    source.emit({ domainName: "web-1", kind: "defined", detail: "updated" });
    // A domain that arrived after the last inventory (migrated in): looked up by name.
    const other = {
      ...sampleDomain,
      uuid: "6f1c2b8e-3d47-4a51-9d0e-000000000002",
      name: "db-1",
      state: "paused" as const,
    };
    hv.domains.push(other);
    source.emit({ domainName: "db-1", kind: "started", detail: "migrated", state: "paused" });
    await tick();
    // Gone from libvirt, named from the cache.
    hv.domains = hv.domains.filter((d) => d.name !== "db-1");
    source.emit({ domainName: "db-1", kind: "undefined", detail: "removed" });
    // Never seen anywhere: not reported (the coordinator could not place it).
    source.emit({ domainName: "ghost", kind: "stopped", detail: "destroyed", state: "shutoff" });
    await tick();
    ac.abort();
    await running;
    expect(got.map((e) => [e.domainUuid, e.kind, e.detail, e.state])).toEqual([
      [sampleDomain.uuid, "started", "booted", "running"],
      [sampleDomain.uuid, "defined", "updated", "shutoff"],
      [other.uuid, "started", "migrated", "paused"],
      [other.uuid, "undefined", "removed", ""],
    ]);
    expect(source.listening).toBe(0);
  });
});
