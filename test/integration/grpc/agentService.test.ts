import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningAgentServer, startAgentServer } from "../../../agent/src/server/startAgentServer.js";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode, DomainState } from "../../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";

// Real gRPC over loopback TCP; only the hypervisor behind the agent is a fake.
describe("AgentService over gRPC", () => {
  const log = createLogger("test", "silent");
  const hv = new FakeHypervisor([sampleDomain]);
  let agent: RunningAgentServer;

  beforeAll(async () => {
    agent = await startAgentServer(
      { listen: "127.0.0.1:0" },
      { hypervisor: hv, hostId: "h-1", libvirtUri: "test:///fake" },
      log,
    );
  });
  afterAll(async () => {
    await agent.close();
  });

  const agentClient = () => createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${agent.port}`));

  it("GetHostInventory reports this host and the hypervisor versions", async () => {
    const { inventory } = await agentClient().getHostInventory({});
    expect(inventory?.hostId).toBe("h-1");
    expect(inventory?.libvirtVersion).toBe("9.0.0");
    expect(inventory?.cpuCount).toBeGreaterThan(0);
    expect(inventory?.memoryBytes).toBeGreaterThan(1024n * 1024n * 1024n); // bigint: 64-bit exact
  });

  it("ListDomains maps domains, disks, state and labels to the wire", async () => {
    const { domains } = await agentClient().listDomains({});
    expect(domains).toHaveLength(1);
    expect(domains[0]).toMatchObject({
      uuid: sampleDomain.uuid,
      name: "web-1",
      state: DomainState.DOMAIN_STATE_RUNNING,
      labels: { tier: "web" },
      hasGuestAgentChannel: true,
    });
    expect(domains[0]?.disks.map((d) => d.target)).toEqual(["vda", "vdb"]);
  });

  it("a declared but unbuilt RPC answers UNIMPLEMENTED naming the RPC (unary and streaming)", async () => {
    await expect(agentClient().abortJob({ jobId: "j" })).rejects.toMatchObject({
      code: Status.UNIMPLEMENTED,
      details: expect.stringMatching(/cairn\.v1\.AgentService\/AbortJob is not implemented/),
    });
    const stream = agentClient().runBackup({ jobId: "j", mode: BackupMode.BACKUP_MODE_AUTO });
    await expect(
      (async () => {
        for await (const _ of stream) {
          /* drain */
        }
      })(),
    ).rejects.toMatchObject({ code: Status.UNIMPLEMENTED, details: expect.stringMatching(/RunBackup/) });
  });

  it("a CairnError from the core becomes the mapped status with the operator message", async () => {
    const broken = new FakeHypervisor();
    broken.listDomains = async () => {
      throw new CairnError("unavailable", "libvirt at qemu:///system is unreachable", {
        hint: "start libvirtd",
      });
    };
    const s = await startAgentServer(
      { listen: "127.0.0.1:0" },
      { hypervisor: broken, hostId: "h", libvirtUri: "x" },
      log,
    );
    try {
      const c = createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${s.port}`));
      await expect(c.listDomains({})).rejects.toMatchObject({
        code: Status.UNAVAILABLE,
        details: "libvirt at qemu:///system is unreachable. start libvirtd",
      });
      broken.listDomains = async () => {
        throw new TypeError("secret internal detail");
      };
      await expect(c.listDomains({})).rejects.toMatchObject({
        code: Status.INTERNAL,
        details: expect.not.stringContaining("secret"),
      });
    } finally {
      await s.close();
    }
  });
});

describe("RunBackup request validation", () => {
  it("names the missing field with INVALID_ARGUMENT before touching anything", async () => {
    const { JobRegistry } = await import("../../../agent/src/jobs/JobRegistry.js");
    const { FakeGuestAgent } = await import("../../support/fakes/FakeGuestAgent.js");
    const { FreezeMarkers } = await import("../../../agent/src/guest/FreezeMarkers.js");
    let opened = 0;
    const log = createLogger("test", "silent");
    const s = await startAgentServer(
      { listen: "127.0.0.1:0" },
      {
        hypervisor: new FakeHypervisor([sampleDomain]),
        hostId: "h",
        libvirtUri: "x",
        backups: {
          backup: {
            hypervisor: new FakeHypervisor([sampleDomain]),
            guestAgent: new FakeGuestAgent(),
            freezeMarkers: new FreezeMarkers("/nonexistent"),
            log,
          },
          config: {} as never,
          jobs: new JobRegistry(),
          openRepository: async () => {
            opened++;
            throw new CairnError("not-found", "no repository");
          },
        },
      },
      log,
    );
    try {
      const c = createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${s.port}`));
      const drain = async (req: Parameters<typeof c.runBackup>[0]) => {
        for await (const _ of c.runBackup(req)) {
          /* drain */
        }
      };
      const UNKNOWN = "00000000-0000-4000-8000-00000000dead";
      await expect(
        drain({ jobId: "", domainUuid: UNKNOWN, repository: "/r", mode: BackupMode.BACKUP_MODE_AUTO }),
      ).rejects.toMatchObject({
        code: Status.INVALID_ARGUMENT,
        details: "job_id is required",
      });
      await expect(
        drain({ jobId: "j", domainUuid: "", repository: "/r", mode: BackupMode.BACKUP_MODE_AUTO }),
      ).rejects.toMatchObject({
        code: Status.INVALID_ARGUMENT,
        details: "domain_uuid is required",
      });
      await expect(
        drain({
          jobId: "j",
          domainUuid: "../../victim",
          repository: "/r",
          mode: BackupMode.BACKUP_MODE_AUTO,
        }),
      ).rejects.toMatchObject({
        code: Status.INVALID_ARGUMENT,
        details: 'domain_uuid "../../victim" is not a uuid',
      });
      await expect(
        drain({
          jobId: "j",
          domainUuid: UNKNOWN,
          repository: "/r",
          mode: BackupMode.BACKUP_MODE_UNSPECIFIED,
        }),
      ).rejects.toMatchObject({
        code: Status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^mode 0 is not a backup mode/),
      });
      expect(opened).toBe(0);
      await expect(
        drain({ jobId: "j", domainUuid: UNKNOWN, repository: "/r", mode: BackupMode.BACKUP_MODE_AUTO }),
      ).rejects.toMatchObject({
        code: Status.NOT_FOUND,
      });
      await expect(c.abortJob({ jobId: "nope" })).resolves.toEqual({ found: false });
      // Every RPC that takes a job id refuses one that could name another path (#24 hole 1).
      const openedBefore = opened;
      for (const jobId of ["../../victim", "a/b", ".hidden", "x\u0000y", "j".repeat(200)]) {
        const refused = {
          code: Status.INVALID_ARGUMENT,
          details: expect.stringMatching(/^job_id .* is not allowed\./),
        };
        await expect(c.abortJob({ jobId })).rejects.toMatchObject(refused);
        await expect(
          drain({ jobId, domainUuid: UNKNOWN, repository: "/r", mode: BackupMode.BACKUP_MODE_AUTO }),
        ).rejects.toMatchObject(refused);
        await expect(
          (async () => {
            for await (const _ of c.runMaintenance({ jobId, repository: "/r" })) {
              /* drain */
            }
          })(),
        ).rejects.toMatchObject(refused);
      }
      expect(opened).toBe(openedBefore);
    } finally {
      await s.close();
    }
  });
});
