import { describe, expect, it } from "vitest";
import { StreamedStates } from "../../../agent/src/coordinator/StreamedStates.js";
import type { DomainEvent } from "../../../shared/src/gen/cairn/v1/coordinator.js";

const polled = (uuid: string, kind: string, state: string): DomainEvent => ({
  domainUuid: uuid,
  domainName: uuid,
  kind,
  detail: state,
  timestampMs: 0n,
  state,
  fromLibvirt: false,
});

describe("StreamedStates: polled events that only repeat the stream", () => {
  it("drops a polled change the stream already reported, keeps the ones it did not", () => {
    const s = new StreamedStates();
    s.record("a", "running", 100);
    s.record("b", "shutoff", 100);
    const out = s.filter(
      [
        polled("a", "started", "running"),
        polled("b", "started", "running"),
        polled("c", "stopped", "shutoff"),
      ],
      200,
    );
    // b: the stream said shut off, the poll sees it running again: a change the stream missed.
    expect(out.map((e) => e.domainUuid)).toEqual(["b", "c"]);
  });

  it("an undefined domain: the stream's state '' matches the poll's", () => {
    const s = new StreamedStates();
    s.record("a", "", 100);
    expect(s.filter([polled("a", "undefined", "")], 200)).toEqual([]);
  });

  it("a streamed event is consumed by the first poll that started after it, not by an older one", () => {
    const s = new StreamedStates();
    s.record("a", "running", 300);
    // This inventory was asked for before the event: it may not show it yet; the next poll does.
    expect(s.filter([], 200)).toEqual([]);
    expect(s.filter([polled("a", "started", "running")], 400)).toEqual([]);
    // Consumed: a later identical change the stream did not see is sent.
    expect(s.filter([polled("a", "started", "running")], 500)).toHaveLength(1);
  });
});
