import { readFileSync } from "node:fs";
import { ChannelCredentials } from "@grpc/grpc-js";
import { ClientError, createChannel, createClient, Status } from "nice-grpc";
import { Metadata } from "nice-grpc-common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FreezeMarkers } from "../../../agent/src/guest/FreezeMarkers.js";
import { JobRegistry } from "../../../agent/src/jobs/JobRegistry.js";
import { type RunningAgentServer, startAgentServer } from "../../../agent/src/server/startAgentServer.js";
import { knownAdminMethods } from "../../../coordinator/src/auth/roleAllows.js";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { CoordinatorServiceDefinition } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { FakeGuestAgent } from "../../support/fakes/FakeGuestAgent.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";
import { encodable, type MessageFnsLike, randomRequest } from "../../support/fuzzRequests.js";
import { SimAgent, simDomain } from "../../support/SimAgent.js";

/**
 * #24: random and boundary values in every field of every admin and agent RPC. Each call must end
 * with a status from the documented set (never INTERNAL or UNKNOWN, never a hang), and both
 * servers must still serve afterwards. CAIRN_FUZZ_INPUTS sets the number of inputs per service.
 */
const INPUTS = Number(process.env.CAIRN_FUZZ_INPUTS ?? 5500);
const DOCUMENTED = new Set<Status>([
  Status.OK,
  Status.CANCELLED,
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.ALREADY_EXISTS,
  Status.PERMISSION_DENIED,
  Status.RESOURCE_EXHAUSTED,
  Status.FAILED_PRECONDITION,
  Status.ABORTED,
  Status.OUT_OF_RANGE,
  Status.UNIMPLEMENTED,
  Status.UNAVAILABLE,
  Status.UNAUTHENTICATED,
]);

interface MethodDef {
  name: string;
  requestType: unknown;
  responseStream: boolean;
}

interface Finding {
  method: string;
  outcome: string;
  request: string;
}

/** Calls each method with random requests; returns what ended outside the documented set. */
async function fuzz(
  client: Record<string, (req: unknown, opts: { signal: AbortSignal }) => unknown>,
  methods: [string, MethodDef][],
  inputs: number,
): Promise<{ tried: number; skipped: number; findings: Finding[]; byStatus: Record<string, number> }> {
  const findings: Finding[] = [];
  const byStatus: Record<string, number> = {};
  let tried = 0;
  let skipped = 0;
  for (let i = 0; i < inputs; i++) {
    const [key, def] = methods[i % methods.length]!;
    const fns = def.requestType as MessageFnsLike;
    const raw = randomRequest(fns) as Record<string, unknown>;
    // `wait: true` asks a maintenance RPC to answer when its job ends, behind every job the fuzz
    // queued before it: that is waiting as documented, not a hang, so the fuzz never asks to wait.
    if ("wait" in raw) raw.wait = false;
    const req = encodable(fns, raw);
    if (req === undefined) {
      skipped++;
      continue;
    }
    tried++;
    // A stream is read for a moment and then let go; a unary call must answer within 15 s.
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), def.responseStream ? 300 : 15_000);
    let outcome: string;
    try {
      const call = client[key]!(req, { signal: ac.signal });
      if (def.responseStream) {
        for await (const _ of call as AsyncIterable<unknown>) {
          /* drain until the timer lets go */
        }
      } else await call;
      outcome = Status[Status.OK];
    } catch (e) {
      if (e instanceof ClientError) outcome = Status[e.code] ?? String(e.code);
      else if ((e as Error).name === "AbortError")
        outcome = def.responseStream ? Status[Status.CANCELLED] : "HANG (no answer in 15 s)";
      else outcome = `client error: ${(e as Error).message}`;
      const known = e instanceof ClientError && DOCUMENTED.has(e.code);
      if (!known && !(def.responseStream && (e as Error).name === "AbortError")) {
        findings.push({
          method: def.name,
          outcome: e instanceof ClientError ? `${outcome}: ${e.details}` : outcome,
          request: JSON.stringify(req, (_k, v) => (typeof v === "bigint" ? String(v) : v)).slice(0, 300),
        });
      }
    } finally {
      clearTimeout(timer);
    }
    byStatus[outcome] = (byStatus[outcome] ?? 0) + 1;
  }
  return { tried, skipped, findings, byStatus };
}

describe("every admin and agent RPC answers hostile input with a documented status (#24)", () => {
  let c: TestCoordinator;
  let agentServer: RunningAgentServer;
  const sim = new SimAgent("kvm-1", [simDomain(1, "vm-1")]);

  beforeAll(async () => {
    c = await startTestCoordinator();
    await sim.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
    await sim.start(c.address);
    // The agent's validation and job handling are real; its hypervisor is a fake and no repository
    // opens (so no input can reach a real file: a restore's destination is never written).
    const log = createLogger("fuzz", "silent");
    const jobs = new JobRegistry();
    const noRepository = async (): Promise<never> => {
      throw new CairnError("not-found", "no repository here");
    };
    agentServer = await startAgentServer(
      { listen: "127.0.0.1:0" },
      {
        hypervisor: new FakeHypervisor([sampleDomain]),
        hostId: "h-fuzz",
        libvirtUri: "test:///fake",
        backups: {
          backup: {
            hypervisor: new FakeHypervisor([sampleDomain]),
            guestAgent: new FakeGuestAgent(),
            freezeMarkers: new FreezeMarkers("/nonexistent"),
            log,
          },
          config: {} as never,
          jobs,
          openRepository: noRepository,
        },
        maintenance: { jobs, openRepository: noRepository },
      },
      log,
    );
  });
  afterAll(async () => {
    await agentServer?.close();
    await sim.dispose();
    await c?.dispose();
  });

  it("the harness itself reports an INTERNAL answer (a crash in a handler)", async () => {
    const broken = new FakeHypervisor([sampleDomain]);
    broken.listDomains = async () => {
      throw new TypeError("a bug");
    };
    const s = await startAgentServer(
      { listen: "127.0.0.1:0" },
      { hypervisor: broken, hostId: "h-broken", libvirtUri: "test:///fake" },
      createLogger("fuzz", "silent"),
    );
    try {
      const client = createClient(
        AgentServiceDefinition,
        createChannel(`127.0.0.1:${s.port}`),
      ) as unknown as Record<string, (req: unknown, opts: { signal: AbortSignal }) => unknown>;
      const methods = Object.entries(AgentServiceDefinition.methods).filter(
        ([, m]) => m.name === "ListDomains",
      ) as [string, MethodDef][];
      const r = await fuzz(client, methods, 3);
      expect(r.findings.map((f) => f.outcome)).toEqual(Array(3).fill(expect.stringMatching(/^INTERNAL/)));
    } finally {
      await s.close();
    }
  });

  it("the coordinator's admin API, as its admin", { timeout: 900_000 }, async () => {
    const client = createClient(
      CoordinatorServiceDefinition,
      createChannel(c.address, ChannelCredentials.createSsl(readFileSync(c.caFile))),
      { "*": { metadata: Metadata({ authorization: `Bearer ${c.adminToken}` }) } },
    ) as unknown as Record<string, (req: unknown, opts: { signal: AbortSignal }) => unknown>;
    const admin = new Set(knownAdminMethods());
    const methods = Object.entries(CoordinatorServiceDefinition.methods).filter(([, m]) =>
      admin.has(m.name),
    ) as [string, MethodDef][];
    const r = await fuzz(client, methods, INPUTS);
    console.log(
      `coordinator fuzz: ${r.tried} inputs over ${methods.length} RPCs (${r.skipped} not encodable), ${JSON.stringify(r.byStatus)}`,
    );
    expect(r.findings).toEqual([]);
    expect(r.tried).toBeGreaterThan(INPUTS * 0.8);
    // Still serving, and the admin token still works.
    await expect(c.admin().listHosts({})).resolves.toBeDefined();
  });

  it("the agent's API", { timeout: 900_000 }, async () => {
    const client = createClient(
      AgentServiceDefinition,
      createChannel(`127.0.0.1:${agentServer.port}`),
    ) as unknown as Record<string, (req: unknown, opts: { signal: AbortSignal }) => unknown>;
    const methods = Object.entries(AgentServiceDefinition.methods) as [string, MethodDef][];
    const r = await fuzz(client, methods, INPUTS);
    console.log(
      `agent fuzz: ${r.tried} inputs over ${methods.length} RPCs (${r.skipped} not encodable), ${JSON.stringify(r.byStatus)}`,
    );
    expect(r.findings).toEqual([]);
    expect(r.tried).toBeGreaterThan(INPUTS * 0.8);
    const inv = createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${agentServer.port}`));
    await expect(inv.getHostInventory({})).resolves.toBeDefined();
  });
});
