import { ClientError, Status } from "nice-grpc-common";
import { describe, expect, it } from "vitest";
import type { AgentClients } from "../../../../coordinator/src/agents/AgentClients.js";
import { SqliteStore } from "../../../../coordinator/src/store/sqlite/SqliteStore.js";
import { Reach } from "../../../../coordinator/src/transfer/Reach.js";
import { createLogger } from "../../../../shared/src/log/createLogger.js";

const ID = "c".repeat(32);

async function setup(probe: (targets: { name: string; location: string }[]) => Promise<unknown>) {
  const store = SqliteStore.open(":memory:");
  await store.putHost({
    id: "kvm-1",
    hostname: "kvm-1",
    agentAddress: "127.0.0.1:1",
    status: "online",
    lastSeenMs: 1,
    enrolledMs: 1,
    inventory: {},
  });
  await store.putRepository({ name: "main", location: "/srv/cairn", createdMs: 1 });
  let kicks = 0;
  const clients = {
    get: () => ({
      probeRepositories: (req: { targets: { name: string; location: string }[] }) => probe(req.targets),
    }),
  } as unknown as AgentClients;
  const reach = new Reach({
    store,
    clients,
    log: createLogger("test", "silent"),
    now: () => 42,
    kick: () => kicks++,
    intervalMs: 1000,
  });
  return { store, reach, kicks: () => kicks };
}

describe("Reach (docs/transfer-paths.md §2)", () => {
  it("stores a host's reports and teaches the repository its id from the report that opened its location", async () => {
    const { store, reach, kicks } = await setup(async (targets) => ({
      reach: [
        ...targets.map((t) => ({
          repositoryId: ID,
          name: t.name,
          location: t.location,
          reachable: true,
          error: "",
          writeMibS: 200,
          readMibS: 300,
          probedMs: 7n,
          hostId: "",
        })),
      ],
    }));
    await reach.probeHost("kvm-1");
    expect(await store.listReach()).toMatchObject([
      { hostId: "kvm-1", repositoryId: ID, name: "main", reachable: true, writeMiBs: 200, probedMs: 7 },
    ]);
    expect((await store.getRepository("main"))?.id).toBe(ID);
    expect(kicks()).toBe(1);
    reach.stop();
  });

  it("a repository registered while a probe of the host runs is probed right after it, not at the next interval", async () => {
    const asked: string[][] = [];
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((r) => {
      releaseFirst = r;
    });
    const { store, reach } = await setup(async (targets) => {
      asked.push(targets.map((t) => t.name));
      if (asked.length === 1) await firstHeld;
      return {
        reach: targets.map((t) => ({
          repositoryId: t.name === "main" ? ID : "d".repeat(32),
          name: t.name,
          location: t.location,
          reachable: true,
          error: "",
          writeMibS: 1,
          readMibS: 1,
          probedMs: 7n,
          hostId: "",
        })),
      };
    });
    const first = reach.probeHost("kvm-1"); // the agent registered
    await new Promise((r) => setTimeout(r, 10));
    await store.putRepository({ name: "s3", location: "s3://b/p/", createdMs: 2 });
    const second = reach.probeHost("kvm-1"); // RegisterRepository, while the first runs
    const third = reach.probeHost("kvm-1");
    releaseFirst();
    await Promise.all([first, second, third]);
    expect(asked).toEqual([["main"], ["main", "s3"]]);
    expect((await store.getRepository("s3"))?.id).toBe("d".repeat(32));
    reach.stop();
  });

  it("an agent without ProbeRepositories (older) reaches every repository at its registered location", async () => {
    const { store, reach } = await setup(async () => {
      throw new ClientError("/cairn.v1.AgentService/ProbeRepositories", Status.UNIMPLEMENTED, "no");
    });
    await reach.probeHost("kvm-1");
    expect(await store.listReach("kvm-1")).toMatchObject([
      { name: "main", location: "/srv/cairn", reachable: true, repositoryId: "", probedMs: 42 },
    ]);
    reach.stop();
  });

  it("a probe that fails otherwise stores nothing (jobs keep waiting) and never throws", async () => {
    const { store, reach } = await setup(async () => {
      throw new ClientError("/cairn.v1.AgentService/ProbeRepositories", Status.UNAVAILABLE, "down");
    });
    await expect(reach.probeHost("kvm-1")).resolves.toBeUndefined();
    expect(await store.listReach()).toEqual([]);
    reach.stop();
  });
});
