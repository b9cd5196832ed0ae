import { describe, expect, it } from "vitest";
import type { Hypervisor } from "../../agent/src/hypervisor/Hypervisor.js";
import { isCairnError } from "../../shared/src/errors/CairnError.js";

export interface HypervisorFixture {
  hypervisor: Hypervisor;
  /** A domain the fixture guarantees exists, with these disks (target → format). */
  expected: { uuid: string; name: string; disks: Record<string, string>; hasGuestAgentChannel: boolean };
}

/** The Hypervisor port's contract: every adapter (and every fake) must pass it. */
export function hypervisorContract(name: string, fixture: () => HypervisorFixture): void {
  describe(`Hypervisor contract: ${name}`, () => {
    it("reports libvirt and QEMU versions", async () => {
      const v = await fixture().hypervisor.versions(new AbortController().signal);
      expect(v.libvirt).toMatch(/^\d+\.\d+/);
      expect(v.qemu).toMatch(/^\d+\.\d+/);
    });

    it("lists the domain with its disks, state and guest-agent channel", async () => {
      const { hypervisor, expected } = fixture();
      const domains = await hypervisor.listDomains(new AbortController().signal);
      const d = domains.find((x) => x.uuid === expected.uuid);
      expect(
        d,
        `domain ${expected.name} missing from ${domains.map((x) => x.name).join(", ")}`,
      ).toBeDefined();
      expect(d?.name).toBe(expected.name);
      expect(d?.persistent).toBe(true);
      expect(d?.hasGuestAgentChannel).toBe(expected.hasGuestAgentChannel);
      expect(Object.fromEntries(d?.disks.map((k) => [k.target, k.format]) ?? [])).toEqual(expected.disks);
      for (const k of d?.disks ?? []) expect(k.source).toMatch(/^\//);
      expect(["running", "shutoff", "paused", "blocked"]).toContain(d?.state);
    });

    it("looks one domain up by name or uuid exactly as listDomains reports it; an unknown one is undefined", async () => {
      const { hypervisor, expected } = fixture();
      const signal = new AbortController().signal;
      const listed = (await hypervisor.listDomains(signal)).find((x) => x.uuid === expected.uuid);
      const byName = await hypervisor.domain(expected.name, signal);
      expect(byName).toEqual(listed);
      expect(await hypervisor.domain(expected.uuid, signal)).toEqual(listed);
      expect(await hypervisor.domain("cairn-no-such-domain", signal)).toBeUndefined();
      expect(await hypervisor.domain("00000000-0000-4000-8000-000000000000", signal)).toBeUndefined();
    });

    it("an aborted signal rejects with an 'aborted' CairnError", async () => {
      const ac = new AbortController();
      ac.abort();
      const err = await fixture()
        .hypervisor.listDomains(ac.signal)
        .catch((e: unknown) => e);
      expect(isCairnError(err, "aborted")).toBe(true);
    });
  });
}
