import { describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../../agent/src/config/AgentConfig.js";
import { defaultChunkWorkers } from "../../../shared/src/repositoryLocation/openRepository.js";

describe("agent config", () => {
  it("an empty file gives the documented defaults", () => {
    const c = parseAgentConfig("", "t.yaml");
    expect(c.libvirtUri).toBe("qemu:///system");
    expect(c.stateDir).toBe("/var/lib/cairn-agent");
    expect(c.timeouts.maxFrozenMs).toBe(30_000);
    expect(c.nbd).toEqual({ requestSize: 1048576, depth: 16 });
    expect([c.swtpmStateDir, c.nvramDir]).toEqual(["/var/lib/libvirt/swtpm", "/var/lib/libvirt/qemu/nvram"]);
    expect([c.swtpmUser, c.swtpmGroup]).toEqual(["tss", "tss"]);
  });

  it("overrides merge with defaults", () => {
    const c = parseAgentConfig("libvirtUri: qemu+ssh://h/system\ntimeouts:\n  freezeMs: 2000\n", "t.yaml");
    expect(c.libvirtUri).toBe("qemu+ssh://h/system");
    expect(c.timeouts.freezeMs).toBe(2000);
    expect(c.timeouts.thawMs).toBe(10_000);
    expect(c.localRepositoryReserveBytes).toBeUndefined();
    expect(c.chunkWorkers).toBeUndefined();
    expect(parseAgentConfig("localRepositoryReserveBytes: 0\n", "t.yaml").localRepositoryReserveBytes).toBe(
      0,
    );
  });

  it("names the field and the reason for bad values and unknown keys", () => {
    expect(() => parseAgentConfig("nbd:\n  depth: 0\n", "/etc/cairn/agent.yaml")).toThrow(
      /invalid agent config \/etc\/cairn\/agent.yaml: nbd.depth: .*>=1/,
    );
    expect(() => parseAgentConfig("libvirtUrl: x\n", "a.yaml")).toThrow(/Unrecognized key.*libvirtUrl/);
    expect(() => parseAgentConfig("chunkWorkers: 0\n", "a.yaml")).toThrow(/a.yaml: chunkWorkers: .*>=1/);
    expect(() => parseAgentConfig("localRepositoryReserveBytes: -1\n", "a.yaml")).toThrow(
      /a.yaml: localRepositoryReserveBytes: .*>=0/,
    );
    expect(() => parseAgentConfig("a: [1,\n", "a.yaml")).toThrow(/a.yaml is not valid YAML/);
  });

  it("chunk workers default to one per core but one, at least one", () => {
    expect([1, 2, 3, 16].map((n) => defaultChunkWorkers(n))).toEqual([1, 1, 2, 15]);
  });
});
