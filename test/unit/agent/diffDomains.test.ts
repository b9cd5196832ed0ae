import { describe, expect, it } from "vitest";
import { diffDomains } from "../../../agent/src/coordinator/diffDomains.js";

describe("diffDomains", () => {
  const d = (uuid: string, name: string, state: "running" | "shutoff" | "crashed") => ({ uuid, name, state });
  it("reports new, changed and vanished domains with the new state", () => {
    const before = new Map([
      ["1", d("1", "a", "running")],
      ["2", d("2", "b", "running")],
      ["3", d("3", "c", "running")],
    ]);
    const ev = diffDomains(
      before,
      [d("1", "a", "running"), d("2", "b", "crashed"), d("4", "new", "shutoff")],
      7,
    );
    expect(ev.map((e) => `${e.domainUuid}:${e.kind}:${e.detail}`).sort()).toEqual([
      "2:crashed:crashed",
      "3:undefined:",
      "4:defined:shutoff",
    ]);
    expect(ev.every((e) => e.timestampMs === 7n)).toBe(true);
  });
  it("reports nothing when nothing changed", () => {
    const list = [d("1", "a", "running")];
    expect(diffDomains(new Map(list.map((x) => [x.uuid, x])), list, 1)).toEqual([]);
  });
});
