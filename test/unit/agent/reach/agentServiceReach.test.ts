import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobRegistry } from "../../../../agent/src/jobs/JobRegistry.js";
import { ReachKeeper } from "../../../../agent/src/reach/ReachKeeper.js";
import { createAgentService } from "../../../../agent/src/server/createAgentService.js";
import { MAX_PROBE_TARGETS } from "../../../../agent/src/server/probeRepositoriesRpc.js";
import { isCairnError } from "../../../../shared/src/errors/CairnError.js";
import { LocalObjectStore } from "../../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../../../shared/src/repositoryLocation/openRepositoryStore.js";
import { FakeHypervisor, sampleDomain } from "../../../support/fakes/FakeHypervisor.js";

const ctx = () => ({ signal: AbortSignal.timeout(15_000) }) as never;
const dir = mkdtempSync(join(tmpdir(), "cairn-reach-svc-"));
const repo = join(dir, "repo");
let id = "";

beforeAll(async () => {
  const r = await Repository.init(new LocalObjectStore(repo), { chunkSize: 64 * 1024, workers: 1 });
  id = r.config.id;
  await r.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const keeper = () =>
  new ReachKeeper({
    hostId: "m1",
    extraLocations: [],
    probeBytes: 4096,
    openStore: (l) => openRepositoryStore(l),
  });

/** A mover-only agent's service: no hypervisor, maintenance jobs, reach. */
function moverService(reach = keeper()) {
  return createAgentService({
    hostId: "m1",
    libvirtUri: "qemu:///system",
    roles: { roles: ["mover"], transferAddress: "10.0.0.9", applianceOf: "kvm-01" },
    maintenance: { jobs: new JobRegistry(), openRepository: () => Promise.reject(new Error("unused")) },
    reach,
  });
}

async function failure(p: Promise<unknown> | AsyncIterable<unknown>): Promise<unknown> {
  try {
    if (Symbol.asyncIterator in p) for await (const _ of p) void _;
    else await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a failure");
}

describe("ProbeRepositories on the agent service", () => {
  it("answers the reach and GetHostInventory then reports it with roles, transfer address and appliance", async () => {
    const svc = moverService();
    const { reach } = await svc.probeRepositories({ targets: [{ name: "main", location: repo }] }, ctx());
    expect(reach).toHaveLength(1);
    expect(reach?.[0]).toMatchObject({
      repositoryId: id,
      name: "main",
      location: repo,
      reachable: true,
      error: "",
    });
    expect(reach?.[0]?.writeMibS).toBeGreaterThan(0);
    const { inventory } = await svc.getHostInventory({}, ctx());
    expect(inventory).toMatchObject({
      hostId: "m1",
      roles: ["mover"],
      transferAddress: "10.0.0.9",
      applianceOf: "kvm-01",
      libvirtVersion: "",
      libvirtUri: "",
    });
    expect(inventory?.repositories?.map((r) => [r.repositoryId, r.name, r.reachable])).toEqual([
      [id, "main", true],
    ]);
  });

  it("refuses invalid targets with invalid-argument naming the field", async () => {
    const svc = moverService();
    const e1 = await failure(svc.probeRepositories({ targets: [{ name: "a", location: "  " }] }, ctx()));
    expect(isCairnError(e1, "invalid-argument") && e1.message).toBe("targets[0].location is empty");
    const many = Array.from({ length: MAX_PROBE_TARGETS + 1 }, (_, i) => ({
      name: `r${i}`,
      location: `/r${i}`,
    }));
    const e2 = await failure(svc.probeRepositories({ targets: many }, ctx()));
    expect(isCairnError(e2, "invalid-argument") && e2.message).toMatch(/at most 64 per request/);
    const e3 = await failure(
      svc.probeRepositories({ targets: [{ name: "a", location: `/${"x".repeat(5000)}` }] }, ctx()),
    );
    expect(isCairnError(e3, "invalid-argument") && e3.message).toMatch(
      /targets\[0\]\.location is 5001 characters/,
    );
  });
});

describe("a mover-only agent service", () => {
  it("answers the hypervisor RPCs failed-precondition and lists no domains", async () => {
    const svc = moverService();
    for (const p of [
      svc.describeChain({ domainUuid: sampleDomain.uuid }, ctx()),
      svc.redefineCheckpoints({ domainUuid: sampleDomain.uuid, checkpoints: [] }, ctx()),
      svc.forgetCheckpoints({ domainUuid: sampleDomain.uuid, names: [] }, ctx()),
      svc.runBackup({ jobId: "j", domainUuid: sampleDomain.uuid } as never, ctx()),
    ]) {
      const e = await failure(p);
      expect(isCairnError(e, "failed-precondition") && e.message).toBe("this agent has no hypervisor role");
    }
    expect(await svc.listDomains({}, ctx())).toEqual({ domains: [] });
    // Maintenance jobs run on a mover too: AbortJob is served.
    expect(await svc.abortJob({ jobId: "nope", reason: "" }, ctx())).toEqual({ found: false });
  });

  it("a hypervisor agent keeps its chain RPCs and reports roles [hypervisor] by default", async () => {
    const svc = createAgentService({
      hypervisor: new FakeHypervisor([sampleDomain]),
      hostId: "h",
      libvirtUri: "test:///x",
    });
    const c = await svc.describeChain({ domainUuid: sampleDomain.uuid }, ctx());
    expect(c.found).toBe(true);
    const { inventory } = await svc.getHostInventory({}, ctx());
    expect(inventory).toMatchObject({
      roles: ["hypervisor"],
      libvirtVersion: "9.0.0",
      libvirtUri: "test:///x",
    });
  });
});
