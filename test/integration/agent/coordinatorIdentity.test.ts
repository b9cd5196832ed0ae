import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChannelCredentials } from "@grpc/grpc-js";
import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CoordinatorPin } from "../../../agent/src/coordinator/CoordinatorPin.js";
import { enrollAgent } from "../../../agent/src/coordinator/enrollAgent.js";
import { type RunningAgentServer, startAgentServer } from "../../../agent/src/server/startAgentServer.js";
import { AgentClients } from "../../../coordinator/src/agents/AgentClients.js";
import { CertificateAuthority } from "../../../coordinator/src/pki/CertificateAuthority.js";
import { coordinatorIdentityPaths, startCoordinator } from "../../../coordinator/src/startCoordinator.js";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { hasCoordinatorMarker, samePublicKey } from "../../../shared/src/pki/coordinatorIdentity.js";
import { createKeyAndCsr } from "../../../shared/src/pki/createKeyAndCsr.js";
import { runOpenssl } from "../../../shared/src/pki/runOpenssl.js";
import { type Identity, readIdentity } from "../../../shared/src/pki/writeIdentity.js";
import { startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";
import { SimAgent } from "../../support/SimAgent.js";

// #24 hole 2: only the coordinator (its markers and the key pinned at enrollment) may call an
// agent; enrollment never hands out the coordinator's name. Real certificates, real TLS, the real
// agent server and the real coordinator.
describe("the coordinator's identity is reserved and pinned", () => {
  const tmp = mkdtempSync(join(tmpdir(), "cairn-ident-"));
  const log = createLogger("test", "silent");
  const signal = () => AbortSignal.timeout(30_000);
  let c: TestCoordinator;
  let ca: CertificateAuthority;
  let agentId: Identity;
  let agent: RunningAgentServer;

  const enroll = async (hostId: string, dir = join(tmp, hostId)) => {
    await enrollAgent(
      {
        coordinator: c.address,
        token: await c.enrollToken(hostId),
        caFile: c.caFile,
        identityDir: dir,
        hostname: hostId,
      },
      signal(),
    );
    const id = await readIdentity(dir);
    if (!id) throw new Error("no identity");
    return id;
  };
  const serveAgent = (id: Identity, dir: string) =>
    startAgentServer(
      {
        listen: "127.0.0.1:0",
        tls: { ...id, coordinator: new CoordinatorPin(dir, id.coordinatorPem) },
      },
      { hypervisor: new FakeHypervisor([sampleDomain]), hostId: "kvm-1", libvirtUri: "test:///fake" },
      log,
    );
  /** Calls the agent as whoever holds this key and certificate. */
  const callAs = (server: RunningAgentServer, who: { keyPem: string; certPem: string }, host = "kvm-1") =>
    createClient(
      AgentServiceDefinition,
      createChannel(
        `127.0.0.1:${server.port}`,
        ChannelCredentials.createSsl(
          Buffer.from(c.running.ctx.ca?.caCertPem ?? ""),
          Buffer.from(who.keyPem),
          Buffer.from(who.certPem),
        ),
        { "grpc.ssl_target_name_override": host, "grpc.default_authority": host },
      ),
    ).getHostInventory({}, { signal: AbortSignal.timeout(10_000) });
  const coordinatorKeys = async () => {
    const paths = coordinatorIdentityPaths(c.config);
    return { keyPem: await readFile(paths.key, "utf8"), certPem: await readFile(paths.cert, "utf8") };
  };

  beforeAll(async () => {
    c = await startTestCoordinator();
    ca = await CertificateAuthority.load(coordinatorIdentityPaths(c.config).caDir, signal());
    agentId = await enroll("kvm-1");
    agent = await serveAgent(agentId, join(tmp, "kvm-1"));
  });
  afterAll(async () => {
    await agent?.close();
    await c?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("enrollment refuses the coordinator's name, before spending the token, in any letter case", async () => {
    for (const name of ["cairn-coordinator", "Cairn-Coordinator"])
      await expect(c.admin().createEnrollmentToken({ hostId: name, ttlSeconds: 60 })).rejects.toMatchObject({
        code: "invalid-argument",
        message: expect.stringMatching(/reserved for the coordinator/),
      });
    // A token for a harmless id, used by a host asking to be called cairn-coordinator.
    const token = await c.enrollToken("kvm-9");
    const dir = join(tmp, "imposter");
    await expect(
      enrollAgent(
        { coordinator: c.address, token, caFile: c.caFile, identityDir: dir, hostname: "cairn-coordinator" },
        signal(),
      ),
    ).rejects.toMatchObject({ code: "invalid-argument", message: expect.stringMatching(/reserved/) });
    expect(existsSync(dir)).toBe(false);
    // The CA's host path refuses it too, whoever calls it.
    const { csrPem } = await createKeyAndCsr({ commonName: "x", signal: signal() });
    await expect(
      ca.signCsr(csrPem, { commonName: "cairn-coordinator", usage: "client", days: 1, signal: signal() }),
    ).rejects.toMatchObject({ code: "invalid-argument" });
    // The token was not spent: the same token still enrolls under a proper name.
    await enrollAgent(
      { coordinator: c.address, token, caFile: c.caFile, identityDir: dir, hostname: "kvm-9" },
      signal(),
    );
  });

  it("enrolment pins the coordinator's certificate; host certificates never carry its markers", async () => {
    const coord = await coordinatorKeys();
    expect(hasCoordinatorMarker(coord.certPem)).toBe(true);
    expect(agentId.coordinatorPem).toBeDefined();
    expect(samePublicKey(agentId.coordinatorPem as string, coord.certPem)).toBe(true);
    expect(hasCoordinatorMarker(agentId.certPem)).toBe(false);
    expect(new X509Certificate(agentId.certPem).subject).toBe("CN=kvm-1");
  });

  it("the real coordinator's client calls the agent", async () => {
    const coord = await coordinatorKeys();
    const clients = new AgentClients({ caPem: ca.caCertPem, ...coord });
    try {
      const r = await clients
        .get({ id: "kvm-1", agentAddress: `127.0.0.1:${agent.port}` })
        .getHostInventory({});
      expect(r.inventory?.hostId).toBe("kvm-1");
    } finally {
      clients.close();
    }
  });

  it("another enrolled host's certificate may not call the agent", async () => {
    const other = await enroll("kvm-2");
    await expect(callAs(agent, other)).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringMatching(/only the coordinator may call this agent, not kvm-2/),
    });
  });

  it("a fleet-CA certificate named cairn-coordinator without the markers is refused", async () => {
    // What an attacker holds who got the CA to sign CN=cairn-coordinator (as enrollment did).
    const { keyPem, csrPem } = await createKeyAndCsr({ commonName: "cairn-coordinator", signal: signal() });
    const dir = coordinatorIdentityPaths(c.config).caDir;
    await writeFile(join(tmp, "evil.csr"), csrPem);
    await writeFile(join(tmp, "evil.ext"), "extendedKeyUsage=serverAuth,clientAuth\n");
    const certPem = await runOpenssl(
      [
        ...["x509", "-req", "-in", join(tmp, "evil.csr"), "-CA", join(dir, "ca-cert.pem")],
        ...["-CAkey", join(dir, "ca-key.pem"), "-days", "1", "-subj", "/CN=cairn-coordinator"],
        ...["-extfile", join(tmp, "evil.ext")],
      ],
      signal(),
    );
    await expect(callAs(agent, { keyPem, certPem })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringMatching(/not the coordinator's \(no coordinator marker\)/),
    });
  });

  it("a certificate with the markers but another key (a second coordinator) is refused", async () => {
    const second = await ca.issueCoordinatorCertificate({ dnsNames: [], ipAddresses: [], signal: signal() });
    expect(hasCoordinatorMarker(second.certPem)).toBe(true);
    await expect(callAs(agent, second)).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringMatching(/not the coordinator key this host pinned/),
    });
  });

  it("an agent enrolled before pins accepts the markers only, and pins the coordinator at its first registration", async () => {
    const sim = new SimAgent("kvm-old", []);
    try {
      await sim.enroll(c.address, await c.enrollToken("kvm-old"), c.caFile);
      await rm(join(sim.identityDir, "coordinator.pem"));
      const old = (await readIdentity(sim.identityDir)) as Identity;
      expect(old.coordinatorPem).toBeUndefined();
      const server = await serveAgent(old, sim.identityDir);
      try {
        const impostor = await enroll("kvm-3");
        await expect(callAs(server, impostor, "kvm-old")).rejects.toMatchObject({
          code: Status.PERMISSION_DENIED,
        });
        await expect(callAs(server, await coordinatorKeys(), "kvm-old")).resolves.toBeDefined();
      } finally {
        await server.close();
      }
      await sim.start(c.address);
      const pinned = (await readIdentity(sim.identityDir))?.coordinatorPem;
      expect(pinned && samePublicKey(pinned, (await coordinatorKeys()).certPem)).toBe(true);
    } finally {
      await sim.dispose();
    }
  });

  it("a coordinator certificate from before the markers is re-issued for the same key at startup", async () => {
    const d = await startTestCoordinator();
    try {
      const paths = coordinatorIdentityPaths(d.config);
      const key = await readFile(paths.key, "utf8");
      const before = await readFile(paths.cert, "utf8");
      // The old form: CN=cairn-coordinator only, signed by the fleet CA for the same key.
      await writeFile(join(tmp, "k.pem"), key);
      const csr = await runOpenssl(["req", "-new", "-key", join(tmp, "k.pem"), "-subj", "/CN=x"], signal());
      await writeFile(join(tmp, "old.csr"), csr);
      await writeFile(
        join(tmp, "old.ext"),
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
      );
      const oldCert = await runOpenssl(
        [
          ...["x509", "-req", "-in", join(tmp, "old.csr"), "-CA", join(paths.caDir, "ca-cert.pem")],
          ...["-CAkey", join(paths.caDir, "ca-key.pem"), "-days", "1", "-subj", "/CN=cairn-coordinator"],
          ...["-extfile", join(tmp, "old.ext")],
        ],
        signal(),
      );
      expect(hasCoordinatorMarker(oldCert)).toBe(false);
      await d.running.close();
      await writeFile(paths.cert, oldCert);
      const again = await startCoordinator(d.config, log, { manualTicks: true });
      try {
        const now = await readFile(paths.cert, "utf8");
        expect(hasCoordinatorMarker(now)).toBe(true);
        expect(samePublicKey(now, before)).toBe(true);
        expect(new X509Certificate(now).subjectAltName).toMatch(/DNS:localhost, IP Address:127\.0\.0\.1/);
        const audit = await again.ctx.store.listAudit(20);
        expect(audit.map((a) => a.action)).toContain("ReissueCoordinatorCertificate");
      } finally {
        await again.close();
      }
    } finally {
      rmSync(d.dir, { recursive: true, force: true });
    }
  });
});
