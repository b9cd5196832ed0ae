import { describe, expect, it } from "vitest";
import { BackupJobState } from "../../../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode, DomainState, QuiesceMode } from "../../../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../../../shared/src/grpc/wire/backupJobState.js";
import { backupMode } from "../../../../shared/src/grpc/wire/backupMode.js";
import { domainInfo } from "../../../../shared/src/grpc/wire/domainInfo.js";
import { domainState } from "../../../../shared/src/grpc/wire/domainState.js";
import { hostInventory } from "../../../../shared/src/grpc/wire/hostInventory.js";
import { quiesceMode } from "../../../../shared/src/grpc/wire/quiesceMode.js";

describe("wire mappings", () => {
  it("every name round-trips through its enum, and no two names share a value", () => {
    for (const m of [backupMode, quiesceMode, backupJobState] as const) {
      const values = m.names.map((n) => (m.toWire as (x: string) => number)(n));
      expect(new Set(values).size).toBe(m.names.length);
      expect(values).not.toContain(0);
      for (const n of m.names)
        expect(
          (m.fromWire as (v: number, f: string) => string)((m.toWire as (x: string) => number)(n), "f"),
        ).toBe(n);
    }
    expect(backupMode.toWire("copy")).toBe(BackupMode.BACKUP_MODE_COPY);
    expect(quiesceMode.toWire("off")).toBe(QuiesceMode.QUIESCE_MODE_OFF);
    expect(backupJobState.toWire("reading")).toBe(BackupJobState.BACKUP_JOB_STATE_READING);
  });

  it("UNSPECIFIED and unknown values are invalid-argument naming the field; nameOf is lenient", () => {
    expect(() => backupMode.fromWire(BackupMode.BACKUP_MODE_UNSPECIFIED, "mode")).toThrow(
      expect.objectContaining({
        code: "invalid-argument",
        message: expect.stringMatching(/^mode 0 is not a backup mode/),
      }),
    );
    expect(() => quiesceMode.fromWire(99 as QuiesceMode, "quiesce")).toThrow(
      /quiesce 99 is not a quiesce mode/,
    );
    expect(backupJobState.nameOf(99 as BackupJobState)).toBeUndefined();
    expect(backupMode.parse("auto", "--mode")).toBe("auto");
    expect(() => backupMode.parse("toString", "--mode")).toThrow(
      /--mode toString is not one of full, incremental/,
    );
  });

  it("domain state: unknown either way is `unknown`, not an error", () => {
    expect(domainState.toWire("shutoff")).toBe(DomainState.DOMAIN_STATE_SHUTOFF);
    expect(domainState.toWire("nonsense")).toBe(DomainState.DOMAIN_STATE_UNSPECIFIED);
    expect(domainState.fromWire(42 as DomainState)).toBe("unknown");
  });

  it("domains and inventory round-trip; sizes and memory become 64-bit on the wire", () => {
    const d = {
      uuid: "u",
      name: "vm",
      state: "running" as const,
      persistent: true,
      disks: [{ target: "vda", format: "qcow2", source: "/v.qcow2", device: "disk" }],
      labels: { a: "b" },
      hasGuestAgentChannel: true,
    };
    const w = domainInfo.toWire(d);
    expect(w.disks[0]?.virtualSize).toBe(0n);
    expect(domainInfo.fromWire(w)).toEqual({ ...d, disks: [{ ...d.disks[0], virtualSize: 0 }] });
    const h = {
      hostId: "h",
      hostname: "n",
      os: "o",
      kernel: "k",
      cpuCount: 4,
      memoryBytes: 2 ** 40,
      libvirtVersion: "l",
      qemuVersion: "q",
      agentVersion: "a",
      libvirtUri: "qemu:///system",
    };
    expect(hostInventory.toWire(h).memoryBytes).toBe(2n ** 40n);
    // An inventory without transfer-path fields (an older agent) reads as a plain hypervisor.
    expect(hostInventory.fromWire(hostInventory.toWire(h))).toEqual({
      ...h,
      roles: ["hypervisor"],
      repositories: [],
      transferAddress: "",
      applianceOf: "",
    });
    const mover = {
      ...h,
      roles: ["mover" as const],
      transferAddress: "10.0.0.9",
      applianceOf: "kvm-1",
      repositories: [],
    };
    expect(hostInventory.fromWire(hostInventory.toWire(mover))).toEqual(mover);
  });
});
