import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DomainInfo } from "../../../agent/src/hypervisor/DomainInfo.js";
import { DomainState } from "../../../shared/src/gen/cairn/v1/common.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { simDomain as dom, SimAgent } from "../../support/SimAgent.js";

// Real coordinator, real enrollment and mutual TLS, real CoordinatorLink; simulated backups.
describe("fleet: enrollment, registration, inventory, migration, lost hosts", () => {
  let c: TestCoordinator;
  const a = new SimAgent("kvm-a", [dom(1, "web-1", { tier: "web" }), dom(2, "db-1", { tier: "db" })]);
  const b = new SimAgent("kvm-b", [dom(3, "web-2", { tier: "web" })]);

  beforeAll(async () => {
    c = await startTestCoordinator();
  });
  afterAll(async () => {
    await a.dispose();
    await b.dispose();
    await c.dispose();
  });

  it("an enrollment token works once; the agent gets a certificate for the host id the token names", async () => {
    const token = await c.enrollToken("kvm-a");
    await a.enroll(c.address, token, c.caFile);
    await expect(b.enroll(c.address, token, c.caFile)).rejects.toMatchObject({
      code: "unauthenticated",
      message: expect.stringMatching(/unknown, used or expired/),
    });
    await b.enroll(c.address, await c.enrollToken("kvm-b"), c.caFile);
    const hosts = (await c.admin().listHosts({})).hosts;
    expect(hosts.map((h) => [h.hostId, h.status])).toEqual([
      ["kvm-a", "enrolled"],
      ["kvm-b", "enrolled"],
    ]);
  });

  it("registered agents are online with their VMs and labels", async () => {
    await a.start(c.address);
    await b.start(c.address);
    const hosts = (await c.admin().listHosts({})).hosts;
    expect(hosts.map((h) => [h.hostId, h.status, h.vmCount])).toEqual([
      ["kvm-a", "online", 2],
      ["kvm-b", "online", 1],
    ]);
    const vms = (await c.admin().listVms({ hostId: "" })).vms;
    expect(vms.map((v) => [v.name, v.hostId, v.labels["tier"]])).toEqual([
      ["db-1", "kvm-a", "db"],
      ["web-1", "kvm-a", "web"],
      ["web-2", "kvm-b", "web"],
    ]);
  });

  it("domain events follow a live migration and state changes", async () => {
    const web1 = a.hypervisor.domains.find((d) => d.name === "web-1") as DomainInfo;
    // Migration: the VM appears on b, then vanishes from a (libvirt's order). While both report it
    // running, a keeps it and the conflict is audited; once a no longer has it, b takes it.
    b.hypervisor.domains.push(structuredClone(web1));
    await eventually("the claim conflict audited", async () =>
      (await c.admin().listAudit({ limit: 50 })).entries.some(
        (e) => e.action === "VmClaimConflict" && e.principal === "agent:kvm-b" && e.target === web1.uuid,
      ),
    );
    expect((await c.admin().listVms({ hostId: "" })).vms.find((v) => v.name === "web-1")?.hostId).toBe(
      "kvm-a",
    );
    a.hypervisor.domains = a.hypervisor.domains.filter((d) => d.name !== "web-1");
    await eventually("web-1 on kvm-b", async () =>
      (await c.admin().listVms({ hostId: "kvm-b" })).vms.some((v) => v.name === "web-1"),
    );
    const db1 = a.hypervisor.domains[0] as DomainInfo;
    db1.state = "shutoff";
    await eventually("db-1 shut off", async () =>
      (await c.admin().listVms({ hostId: "kvm-a" })).vms.some(
        (v) => v.name === "db-1" && v.state === DomainState.DOMAIN_STATE_SHUTOFF,
      ),
    );
    const vms = (await c.admin().listVms({ hostId: "" })).vms;
    expect(vms.find((v) => v.name === "web-1")?.hostId).toBe("kvm-b");
  });

  it("an agent that stops heartbeating is marked lost, and online again when it returns", async () => {
    await a.kill();
    await eventually(
      "kvm-a lost",
      async () => (await c.admin().listHosts({})).hosts.find((h) => h.hostId === "kvm-a")?.status === "lost",
      10_000,
    );
    await a.start(c.address);
    await eventually(
      "kvm-a online",
      async () =>
        (await c.admin().listHosts({})).hosts.find((h) => h.hostId === "kvm-a")?.status === "online",
    );
  });

  it("metrics count heartbeats and domain events", async () => {
    const text = await (await fetch(`http://127.0.0.1:${c.running.metricsPort}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? "NaN");
    expect(value("cairn_agent_heartbeats_total")).toBeGreaterThan(0);
    expect(value("cairn_domain_events_total")).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(/cairn_host_events_total\{kind="lost"\} 1/);
  });
});
