import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChannelCredentials } from "@grpc/grpc-js";
import { createChannel, createClient } from "nice-grpc";
import { Metadata, Status } from "nice-grpc-common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../../coordinator/src/pki/CertificateAuthority.js";
import { CoordinatorServiceDefinition } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { createKeyAndCsr } from "../../../shared/src/pki/createKeyAndCsr.js";
import { readIdentity } from "../../../shared/src/pki/writeIdentity.js";
import { cairnCli } from "../../support/cairnCli.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";
import { SimAgent, simDomain } from "../../support/SimAgent.js";

// Authentication and authorization at the coordinator's edge, with real certificates over TLS.
describe("coordinator API security and input validation", () => {
  let c: TestCoordinator;
  const agent = new SimAgent("kvm-1", [simDomain(1, "vm-1")]);
  const tmp = mkdtempSync(join(tmpdir(), "cairn-auth-"));
  let viewer: string;
  let operator: string;

  beforeAll(async () => {
    c = await startTestCoordinator();
    await agent.enroll(c.address, await c.enrollToken("kvm-1"), c.caFile);
    await agent.start(c.address);
    viewer = (await c.admin().createToken({ name: "grafana", role: "viewer" })).token;
    operator = (await c.admin().createToken({ name: "oncall", role: "operator" })).token;
  });
  afterAll(async () => {
    await agent.dispose();
    await c.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  const raw = (creds: ChannelCredentials, token?: string, extra: Record<string, string> = {}) =>
    createClient(CoordinatorServiceDefinition, createChannel(c.address, creds), {
      "*": { metadata: Metadata({ ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra }) },
    });
  const caOnly = () => ChannelCredentials.createSsl(readFileSync(c.caFile));

  it("admin calls need a known token", async () => {
    await expect(raw(caOnly()).listHosts({})).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
    await expect(raw(caOnly(), "adm_forged").listHosts({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it("a viewer can read but not start, cancel or delete anything; an operator can back up but not delete policies", async () => {
    await expect(c.admin(viewer).listHosts({})).resolves.toBeDefined();
    await expect(c.admin(viewer).listJobs({ state: "", vm: "", limit: 5 })).resolves.toBeDefined();
    for (const call of [
      () => c.admin(viewer).backupNow({ vm: "vm-1", policy: "", mode: 0 }),
      () => c.admin(viewer).deletePolicy({ name: "x" }),
      () => c.admin(viewer).cancelJob({ jobId: "x" }),
      () => c.admin(viewer).createToken({ name: "x", role: "admin" }),
      () => c.admin(viewer).gcRepository({ name: "main", dryRun: false }),
    ])
      await expect(call()).rejects.toMatchObject({
        code: "permission-denied",
        message: expect.stringMatching(/viewer/),
      });
    await expect(c.admin(operator).deletePolicy({ name: "x" })).rejects.toMatchObject({
      code: "permission-denied",
    });
    await expect(c.admin(operator).createToken({ name: "x", role: "admin" })).rejects.toMatchObject({
      code: "permission-denied",
    });
    // Authorized, then refused for the input: the role check came first and passed.
    await expect(c.admin(operator).backupNow({ vm: "nope", policy: "", mode: 0 })).rejects.toMatchObject({
      code: "not-found",
    });
  });

  it("agent calls need the agent's certificate; a forged identity header or a foreign CA's certificate is refused", async () => {
    await expect(raw(caOnly()).heartbeat({ hostId: "kvm-1", runningJobIds: [] })).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    await expect(
      raw(caOnly(), undefined, { "x-cairn-peer-cn": "kvm-1" }).heartbeat({
        hostId: "kvm-1",
        runningJobIds: [],
      }),
    ).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
    // An admin token is not an agent identity either.
    await expect(
      raw(caOnly(), c.adminToken).heartbeat({ hostId: "kvm-1", runningJobIds: [] }),
    ).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    const signal = AbortSignal.timeout(30_000);
    const foreign = await CertificateAuthority.init(join(tmp, "foreign-ca"), {
      commonName: "evil CA",
      signal,
    });
    const { keyPem, csrPem } = await createKeyAndCsr({ commonName: "kvm-1", signal });
    const certPem = await foreign.signCsr(csrPem, { commonName: "kvm-1", usage: "client", days: 1, signal });
    const evil = ChannelCredentials.createSsl(
      readFileSync(c.caFile),
      Buffer.from(keyPem),
      Buffer.from(certPem),
    );
    await expect(raw(evil).heartbeat({ hostId: "kvm-1", runningJobIds: [] })).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it("a genuine agent certificate cannot speak for another host", async () => {
    const id = await readIdentity(agent.identityDir);
    if (!id) throw new Error("no identity");
    const creds = ChannelCredentials.createSsl(
      Buffer.from(id.caPem),
      Buffer.from(id.keyPem),
      Buffer.from(id.certPem),
    );
    await expect(raw(creds).heartbeat({ hostId: "kvm-1", runningJobIds: [] })).resolves.toEqual({
      abortJobIds: [],
    });
    await expect(raw(creds).heartbeat({ hostId: "kvm-2", runningJobIds: [] })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
      details: expect.stringMatching(/host_id kvm-2 does not match the certificate's host kvm-1/),
    });
    // Nor use admin calls.
    await expect(raw(creds).listHosts({})).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
  });

  it("a client that does not trust the fleet CA cannot connect", async () => {
    const signal = AbortSignal.timeout(30_000);
    const other = await CertificateAuthority.init(join(tmp, "other-ca"), { commonName: "other", signal });
    await expect(
      raw(ChannelCredentials.createSsl(Buffer.from(other.caCertPem)), c.adminToken).listHosts(
        {},
        { signal: AbortSignal.timeout(5000) },
      ),
    ).rejects.toMatchObject({ code: Status.UNAVAILABLE });
  });

  it("malformed requests get INVALID_ARGUMENT naming the field", async () => {
    const admin = c.admin();
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => admin.applyPolicy({ yaml: "" }), /yaml is required/],
      [
        () =>
          admin.applyPolicy({
            yaml: "name: p\nselector: {names: [a]}\nschedule: {cron: '0 25 * * *'}\nmode: {kind: full}\nrepository: main\n",
          }),
        /schedule\.cron/,
      ],
      [
        () =>
          admin.applyPolicy({
            yaml: "name: p\nselector: {names: [a]}\nschedule: {cron: '0 1 * * *'}\nmode: {kind: full}\nrepository: main\nretention: {keepLast: -1}\n",
          }),
        /retention\.keepLast/,
      ],
      [
        () =>
          admin.applyPolicy({
            yaml: "name: p\nselector: {names: [a]}\nschedule: {cron: '0 1 * * *'}\nmode: {kind: full}\nrepository: main\ncolour: red\n",
          }),
        /colour/,
      ],
      [
        () =>
          admin.applyPolicy({
            yaml: "name: p\nselector: {names: [a]}\nschedule: {cron: '0 1 * * *'}\nmode: {kind: full}\nrepository: nope\n",
          }),
        /repository: nope is not registered/,
      ],
      [() => admin.backupNow({ vm: "", policy: "", mode: 0 }), /vm is required/],
      [() => admin.listJobs({ state: "bogus", vm: "", limit: 0 }), /state "bogus" is not one of/],
      [() => admin.createToken({ name: "x", role: "root" }), /role "root"/],
      [() => admin.createEnrollmentToken({ hostId: "bad host!", ttlSeconds: 0 }), /host_id "bad host!"/],
      [() => admin.registerRepository({ name: "Bad Name", location: "/x" }), /name "Bad Name"/],
      [() => admin.watchJob({ jobId: "" })[Symbol.asyncIterator]().next(), /job_id is required/],
    ];
    for (const [call, message] of cases)
      await expect(call()).rejects.toMatchObject({
        code: "invalid-argument",
        message: expect.stringMatching(message),
      });
  });

  it("tokens expire, can be listed without their secret, and a revoked one is refused at once (#24)", async () => {
    const admin = c.admin();
    const made = await admin.createToken({ name: "ci-bot", role: "operator", ttlDays: 2 });
    const days = (Number(made.expiresMs) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(1.99);
    expect(days).toBeLessThanOrEqual(2);
    await expect(raw(caOnly(), made.token).listHosts({})).resolves.toBeDefined();
    // The default lifetime (90 days), and the ceiling (365).
    const dflt = await admin.createToken({ name: "dflt", role: "viewer" });
    expect(Math.round((Number(dflt.expiresMs) - Date.now()) / 86_400_000)).toBe(90);
    await expect(admin.createToken({ name: "forever", role: "viewer", ttlDays: 366 })).rejects.toMatchObject({
      message: expect.stringMatching(/ttl_days 366 is above tokens.maxTtlDays \(365\)/),
    });
    const listed = await admin.listTokens({});
    const bot = listed.tokens.find((t) => t.name === "ci-bot");
    expect(bot).toMatchObject({ role: "operator", revokedMs: 0n });
    expect(JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(
      made.token,
    );
    // A viewer and an operator may not list or revoke tokens.
    await expect(raw(caOnly(), viewer).listTokens({})).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    await expect(raw(caOnly(), operator).revokeToken({ name: "ci-bot" })).rejects.toMatchObject({
      code: Status.PERMISSION_DENIED,
    });
    expect((await admin.revokeToken({ name: "ci-bot" })).revoked).toBe(1);
    await expect(raw(caOnly(), made.token).listHosts({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    expect((await admin.listTokens({})).tokens.find((t) => t.name === "ci-bot")).toMatchObject({
      revokedBy: "admin:bootstrap",
    });
    await expect(admin.revokeToken({ name: "ci-bot" })).rejects.toMatchObject({
      message: expect.stringMatching(/every token named ci-bot is revoked already/),
    });
    // An expired token (its record aged in the store) is refused; the cache reloads on the next change.
    const old = await admin.createToken({ name: "old", role: "viewer", ttlDays: 1 });
    const rec = (await c.running.ctx.store.listTokens()).find((t) => t.name === "old");
    if (!rec) throw new Error("token old not stored");
    await c.running.ctx.store.putToken({ ...rec, expiresMs: Date.now() - 1000 });
    await admin.createToken({ name: "reload", role: "viewer" });
    await expect(raw(caOnly(), old.token).listHosts({})).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
  });

  it("the CLI refuses --token (it would show in ps) and names the alternatives", async () => {
    const r = await cairnCli([
      "hosts",
      "list",
      "--coordinator",
      c.address,
      "--ca-file",
      c.caFile,
      "--token",
      "adm_x",
    ]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/--token is not accepted: a token on the command line shows in ps/);
    expect(r.stderr).toMatch(/--token-file/);
  });

  it("every change is in the audit log with who made it", async () => {
    const entries = (await c.admin().listAudit({ limit: 100 })).entries;
    const actions = entries.map((e) => `${e.principal} ${e.action} ${e.target}`);
    expect(actions).toContain("admin:bootstrap CreateToken grafana");
    expect(actions).toContain("admin:bootstrap CreateToken oncall");
    expect(actions).toContain("admin:bootstrap CreateEnrollmentToken kvm-1");
    expect(actions).toContain("enrollment:enroll kvm-1 Enroll kvm-1");
    expect(actions).toContain("admin:bootstrap RegisterRepository main");
  });

  it("failed authentications are audited with the token's name and the method, without a flood (#24)", async () => {
    const refusals = async () =>
      (await c.admin().listAudit({ limit: 1000 })).entries
        .filter((e) => e.action === "AuthFailed")
        .map((e) => `${e.principal} ${e.target}: ${e.detail}`);
    const seen = await refusals();
    // From the tests above: a viewer's refused calls (the first of the minute written, the rest
    // counted), a revoked and an expired token named, a forged one and a missing one.
    expect(seen).toContain("viewer:grafana BackupNow: role denied from 127.0.0.1");
    expect(seen).not.toContain("viewer:grafana DeletePolicy: role denied from 127.0.0.1");
    expect(seen).toContain("operator:oncall DeletePolicy: role denied from 127.0.0.1");
    expect(seen).toContain("token:ci-bot ListHosts: revoked token from 127.0.0.1");
    expect(seen).toContain("token:old ListHosts: expired token from 127.0.0.1");
    expect(seen).toContain("unauthenticated ListHosts: unknown token from 127.0.0.1");
    expect(seen).toContain("unauthenticated ListHosts: no token from 127.0.0.1");
    expect(seen).toContain("unauthenticated Heartbeat: no agent certificate from 127.0.0.1");
    // A brute force: 200 forged tokens, each on a new connection, add no entry within the minute.
    for (let i = 0; i < 200; i++)
      await expect(raw(caOnly(), `adm_guess${i}`).listHosts({})).rejects.toMatchObject({
        code: Status.UNAUTHENTICATED,
      });
    const after = await refusals();
    expect(after.length - seen.length).toBeLessThanOrEqual(1); // one if the minute rolled over
    // A wrong enrollment token is refused and audited the same way.
    const { csrPem } = await createKeyAndCsr({ commonName: "kvm-9", signal: AbortSignal.timeout(30_000) });
    await expect(
      raw(caOnly()).enroll({ token: "enr_guess", csrPem, hostname: "kvm-9" }),
    ).rejects.toMatchObject({
      code: Status.UNAUTHENTICATED,
    });
    expect(await refusals()).toContain(
      "unauthenticated Enroll: unknown, used or expired enrollment token from 127.0.0.1",
    );
  });

  it("Register is audited when an agent's address changes or it comes back, not on every reconnect (#24)", async () => {
    const registers = async () =>
      (await c.admin().listAudit({ limit: 1000 })).entries
        .filter((e) => e.action === "Register" && e.target === "kvm-1")
        .map((e) => `${e.principal}: ${e.detail}`);
    const first = agent.port;
    expect(await registers()).toEqual([`agent:kvm-1: registered at 127.0.0.1:${first}; 1 domains`]);
    // Reconnects at the same address (a coordinator or network blip): nothing new.
    await agent.kill();
    await agent.start(c.address, { port: first });
    await agent.kill();
    await agent.start(c.address, { port: first });
    expect(await registers()).toHaveLength(1);
    // Another address: where its jobs go changed.
    await agent.kill();
    await agent.start(c.address);
    const second = agent.port;
    expect(second).not.toBe(first);
    expect((await registers())[0]).toBe(
      `agent:kvm-1: address 127.0.0.1:${first} → 127.0.0.1:${second}; 1 domains`,
    );
    // Lost (no heartbeat for lostAfterSeconds), then back.
    await agent.kill();
    await eventually(
      "kvm-1 lost",
      async () => (await c.running.ctx.store.getHost("kvm-1"))?.status === "lost",
    );
    await agent.start(c.address, { port: second });
    const all = await registers();
    expect(all).toHaveLength(3);
    expect(all[0]).toBe(`agent:kvm-1: back at 127.0.0.1:${second} (was lost); 1 domains`);
  });
});
