import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChannelCredentials, ServerCredentials } from "@grpc/grpc-js";
import { execa, type ResultPromise } from "execa";
import { createChannel, createClient, createServer } from "nice-grpc";
import { type CoordinatorClient, connectCoordinator } from "../../cli/src/connectCoordinator.js";
import { initCoordinatorState } from "../../coordinator/src/bootstrap/initCoordinatorState.js";
import { parseCoordinatorConfig } from "../../coordinator/src/config/CoordinatorConfig.js";
import { CertificateAuthority } from "../../coordinator/src/pki/CertificateAuthority.js";
import { coordinatorIdentityPaths } from "../../coordinator/src/startCoordinator.js";
import {
  AgentServiceDefinition,
  type AgentServiceImplementation,
} from "../../shared/src/gen/cairn/v1/agent.js";
import { DomainState } from "../../shared/src/gen/cairn/v1/common.js";
import { CoordinatorServiceDefinition } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { withUnimplemented } from "../../shared/src/grpc/withUnimplemented.js";
import { createKeyAndCsr } from "../../shared/src/pki/createKeyAndCsr.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";

export const log = (s: string) => process.stderr.write(`${s}\n`);

/** The uuid of simulated agent a's VM v. */
export const simUuid = (a: number, v: number) =>
  `10000000-0000-4000-8000-${String(a * 1000 + v).padStart(12, "0")}`;

export type SimClient = ReturnType<typeof createClient<typeof CoordinatorServiceDefinition>>;
export interface SimFleetAgent {
  id: string;
  client: SimClient;
  vms: string[];
}

/** A coordinator daemon prepared for a fleet bench: state, config, CA, repository "main". */
export async function prepareBenchCoordinator(dir: string) {
  const port = 17450 + Math.floor(Math.random() * 1000);
  const address = `127.0.0.1:${port}`;
  const config = {
    ...parseCoordinatorConfig("", "bench"),
    stateDir: dir,
    listen: address,
    metricsListen: "",
  };
  // The bench's policy fires every second (a pass under load), below the default cron minimum.
  writeFileSync(
    join(dir, "coordinator.yaml"),
    `stateDir: ${dir}\nlisten: "${address}"\nmetricsListen: "127.0.0.1:${port + 1}"\nheartbeatIntervalSeconds: 5\nlostAfterSeconds: 60\nschedulerTickMs: 1000\npolicies: {minCronIntervalSeconds: 1}\nlogLevel: info\n`,
  );
  const init = await initCoordinatorState(config, { signal: AbortSignal.timeout(60_000) });
  const repoPath = join(dir, "repo");
  await (await Repository.init(new LocalObjectStore(repoPath))).close();
  const ca = await CertificateAuthority.load(
    coordinatorIdentityPaths(config).caDir,
    AbortSignal.timeout(30_000),
  );
  return { dir, port, address, config, init, repoPath, ca, metricsPort: port + 1 };
}
export type BenchCoordinator = Awaited<ReturnType<typeof prepareBenchCoordinator>>;

/**
 * One AgentService for every simulated agent (they share its address), with the RPCs a bench
 * needs; the rest answer UNIMPLEMENTED.
 */
export async function startSimAgentServer(
  c: BenchCoordinator,
  impl: Partial<AgentServiceImplementation>,
): Promise<{ port: number; stop(): void }> {
  const tls = await c.ca.issueHostKeyAndCertificate({
    hostId: "bench-agents",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    signal: AbortSignal.timeout(30_000),
  });
  const server = createServer();
  server.add(
    AgentServiceDefinition,
    withUnimplemented<AgentServiceImplementation>(AgentServiceDefinition, impl, "bench"),
  );
  const port = await server.listen(
    "127.0.0.1:0",
    ServerCredentials.createSsl(Buffer.from(c.ca.caCertPem), [
      { cert_chain: Buffer.from(tls.certPem), private_key: Buffer.from(tls.keyPem) },
    ]),
  );
  return { port, stop: () => server.forceShutdown() };
}

/** Starts the compiled coordinator daemon with the node flags and environment of its systemd unit. */
export async function startCoordinatorDaemon(c: BenchCoordinator): Promise<{
  child: ResultPromise;
  pid: number;
  logFile: string;
  admin: CoordinatorClient;
  rssNow(): number;
  cpuSeconds(): number;
}> {
  const unit = readFileSync("systemd/cairn-coordinator.service", "utf8");
  const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  const unitNodeFlags = execStart.slice(
    1,
    execStart.findIndex((a) => a.endsWith("main.js")),
  );
  const unitEnv = Object.fromEntries(
    [...unit.matchAll(/^Environment=(\S+?)=(\S*)$/gm)].map((m) => [m[1] as string, m[2] as string]),
  );
  log(
    `[bench] coordinator as its unit runs it: node ${unitNodeFlags.join(" ")}, env ${JSON.stringify(unitEnv)}`,
  );
  const logFile = join(c.dir, "coordinator.log");
  const child = execa(
    "node",
    [
      ...unitNodeFlags,
      // CAIRN_BENCH_PROF=DIR writes the coordinator's CPU profile there (at SIGTERM).
      ...(process.env.CAIRN_BENCH_PROF
        ? ["--cpu-prof", `--cpu-prof-dir=${process.env.CAIRN_BENCH_PROF}`]
        : []),
      // CAIRN_BENCH_NODE_FLAGS: extra node flags for the coordinator (to try memory settings).
      ...(process.env.CAIRN_BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
      "dist/coordinator/src/main.js",
      "--config",
      join(c.dir, "coordinator.yaml"),
    ],
    { reject: false, env: unitEnv, stderr: { file: logFile } },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => d.toString().includes("listening") && resolve());
    void child.then((r) => reject(new Error(`coordinator exited ${r.exitCode}; see ${logFile}`)));
  });
  const pid = child.pid as number;
  const admin = connectCoordinator({
    coordinator: c.address,
    token: c.init.adminToken,
    caFile: c.init.caFile,
  });
  await admin.registerRepository({ name: "main", location: c.repoPath });
  const rssNow = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(m?.[1] ?? 0) / 1024;
  };
  /** CPU seconds (user + system) the daemon has used so far. */
  const cpuSeconds = () => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  };
  return { child, pid, logFile, admin, rssNow, cpuSeconds };
}

/**
 * Enrolls `n` simulated agents through the real Enroll RPC (one key pair for all keeps the bench's
 * own cost down; each gets its own certificate and CN) and registers `vmsPerAgent` running VMs each.
 */
export async function enrollSimAgents(
  c: BenchCoordinator,
  admin: CoordinatorClient,
  n: number,
  vmsPerAgent: number,
  agentPort: number,
): Promise<SimFleetAgent[]> {
  const { keyPem, csrPem } = await createKeyAndCsr({
    commonName: "bench",
    signal: AbortSignal.timeout(30_000),
  });
  const caPem = readFileSync(c.init.caFile);
  const enrollClient = createClient(
    CoordinatorServiceDefinition,
    createChannel(c.address, ChannelCredentials.createSsl(caPem)),
  );
  const agents: SimFleetAgent[] = [];
  for (let i = 0; i < n; i += 25) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, n - i) }, async (_, k) => {
        const id = `sim-${String(i + k).padStart(4, "0")}`;
        const { token } = await admin.createEnrollmentToken({ hostId: id, ttlSeconds: 600 });
        const r = await enrollClient.enroll({ token, csrPem, hostname: id });
        const channel = createChannel(
          c.address,
          ChannelCredentials.createSsl(caPem, Buffer.from(keyPem), Buffer.from(r.certificatePem)),
        );
        return { id, client: createClient(CoordinatorServiceDefinition, channel), vms: [] as string[] };
      }),
    );
    agents.push(...batch);
  }
  await Promise.all(
    agents.map(async (a, ai) => {
      const domains = Array.from({ length: vmsPerAgent }, (_, v) => ({
        uuid: simUuid(ai, v),
        name: `vm-${ai}-${v}`,
        state: DomainState.DOMAIN_STATE_RUNNING,
        persistent: true,
        disks: [{ target: "vda", format: "qcow2", source: "/x", device: "disk", virtualSize: 1n << 30n }],
        labels: { fleet: "bench" },
        hasGuestAgentChannel: true,
      }));
      a.vms = domains.map((d) => d.uuid);
      await a.client.register({ inventory: undefined, domains, agentAddress: `127.0.0.1:${agentPort}` });
    }),
  );
  return agents;
}

/** Reads the coordinator's metrics endpoint; `v(re)` picks one value. */
export async function scrapeMetrics(c: BenchCoordinator): Promise<(re: RegExp) => number> {
  const text = await (await fetch(`http://127.0.0.1:${c.metricsPort}/metrics`)).text();
  return (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
}
