import { mkdtempSync, rmSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { eventually, startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";

// The real cairn-agent daemon with roles [mover] on a host where libvirt is out of reach: a libvirt
// URI whose socket does not exist, a QEMU user that does not exist, and a `virsh` on PATH that
// records any call. It must start, serve, probe and register without touching libvirt
// (docs/transfer-paths.md §1).
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const dir = mkdtempSync(join(tmpdir(), "cairn-mover-"));
const virshCalls = join(dir, "virsh-calls");
const binDir = join(dir, "bin");
const repo = join(dir, "repo");
let repoId = "";
const daemons: ResultPromise[] = [];

function moverConfig(name: string, extra = ""): string {
  return [
    `stateDir: ${join(dir, name)}`,
    "listen: 127.0.0.1:0",
    "logLevel: warn",
    "roles: [mover]",
    "libvirtUri: qemu+unix:///system?socket=/nonexistent/cairn/libvirt-sock",
    "qemuUser: no-such-user-cairn",
    "qemuGroup: no-such-group-cairn",
    "probeBytes: 65536",
    "transfer:",
    "  address: 10.0.0.9",
    "  applianceOf: kvm-01",
    extra,
  ].join("\n");
}

const env = () => ({ PATH: `${binDir}:${process.env.PATH}` });

async function runAgent(args: string[]): Promise<void> {
  await execa("node", ["--import", "tsx", join(REPO_ROOT, "agent/src/main.ts"), ...args], {
    cwd: REPO_ROOT,
    env: env(),
  });
}

/** Starts the daemon; resolves once it listens, with its gRPC target and its pid. */
async function startDaemon(configPath: string): Promise<{ target: string; pid: number }> {
  const d = execa("node", ["--import", "tsx", join(REPO_ROOT, "agent/src/main.ts"), "--config", configPath], {
    cwd: REPO_ROOT,
    env: env(),
    reject: false,
  });
  daemons.push(d);
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error("agent did not start within 60 s")), 60_000);
    d.stdout?.on("data", (b: Buffer) => {
      const m = /listening (?:on port (\d+)|on unix socket (\S+))/.exec(b.toString());
      if (m) {
        clearTimeout(t);
        res({ target: m[1] ? `127.0.0.1:${m[1]}` : `unix://${m[2]}`, pid: d.pid as number });
      }
    });
    void d.then((r) => rej(new Error(`agent exited: ${r.stderr}`)));
  });
}

beforeAll(async () => {
  await mkdir(binDir);
  await writeFile(join(binDir, "virsh"), `#!/bin/sh\necho "$@" >> '${virshCalls}'\nexit 1\n`);
  await chmod(join(binDir, "virsh"), 0o755);
  const r = await Repository.init(new LocalObjectStore(repo), { chunkSize: 64 * 1024, workers: 1 });
  repoId = r.config.id;
  await r.close();
});
afterAll(async () => {
  for (const d of daemons) d.kill("SIGTERM");
  await Promise.all(daemons.map((d) => d.catch(() => {})));
  rmSync(dir, { recursive: true, force: true });
});

/** The TCP ports a process listens on (its socket inodes in /proc/net/tcp{,6} in state LISTEN). */
async function tcpListeners(pid: number): Promise<string[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ""));
    if (m?.[1]) inodes.add(m[1]);
  }
  const ports: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"])
    for (const line of (await readFile(table, "utf8").catch(() => "")).split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === "0A" && cols[9] && inodes.has(cols[9])) ports.push(cols[1] ?? "");
    }
  return ports;
}

async function noVirshCalls(): Promise<void> {
  expect(await readFile(virshCalls, "utf8").catch(() => "")).toBe("");
}

describe("a mover-only cairn-agent daemon", () => {
  it("starts without libvirt, reports roles [mover], probes, and refuses hypervisor RPCs", async () => {
    const config = join(dir, "standalone.yaml");
    await writeFile(config, moverConfig("standalone", `repositories: [${join(dir, "missing")}]`));
    const { target } = await startDaemon(config);
    const client = createClient(AgentServiceDefinition, createChannel(target));

    const { reach } = await client.probeRepositories({ targets: [{ name: "main", location: repo }] });
    expect(reach.map((r) => [r.location, r.repositoryId, r.name, r.reachable])).toEqual([
      [repo, repoId, "main", true],
      [join(dir, "missing"), "", "", false],
    ]);
    expect(reach[0]?.writeMibS).toBeGreaterThan(0);
    expect(reach[1]?.error).toBe(`${join(dir, "missing")} does not exist on this host`);

    const { inventory } = await client.getHostInventory({});
    expect(inventory).toMatchObject({
      roles: ["mover"],
      transferAddress: "10.0.0.9",
      applianceOf: "kvm-01",
      libvirtVersion: "",
      libvirtUri: "",
    });
    expect(inventory?.repositories.map((r) => [r.location, r.reachable])).toEqual([
      [repo, true],
      [join(dir, "missing"), false],
    ]);

    await expect(
      client.describeChain({ domainUuid: "00000000-0000-0000-0000-000000000001" }),
    ).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringMatching(/this agent has no hypervisor role/),
    });
    await expect(
      (async () => {
        for await (const _ of client.runBackup({
          jobId: "j",
          domainUuid: "00000000-0000-0000-0000-000000000001",
        }))
          void _;
      })(),
    ).rejects.toMatchObject({ code: Status.FAILED_PRECONDITION });
    expect((await client.listDomains({})).domains).toEqual([]);
    await noVirshCalls();
  });

  it("not enrolled, it serves gRPC only on a 0600 unix socket in its state dir, never on TCP (#24)", async () => {
    const config = join(dir, "private.yaml");
    // listen names a TCP address: not enrolled, nothing could authenticate callers there.
    await writeFile(config, moverConfig("private"));
    const { target, pid } = await startDaemon(config);
    const socket = join(dir, "private", "agent.sock");
    expect(target).toBe(`unix://${socket}`);
    const st = await stat(socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid?.());
    expect(await tcpListeners(pid)).toEqual([]);
    const { inventory } = await createClient(AgentServiceDefinition, createChannel(target)).getHostInventory(
      {},
    );
    expect(inventory?.roles).toEqual(["mover"]);
  });

  describe("enrolled", () => {
    let c: TestCoordinator;
    beforeAll(async () => {
      c = await startTestCoordinator();
    });
    afterAll(async () => {
      await c?.dispose();
    });

    it("registers with the coordinator with no domains and its roles, and heartbeats", async () => {
      const config = join(dir, "enrolled.yaml");
      await writeFile(
        config,
        moverConfig("enrolled", `coordinator:\n  address: ${c.address}\n  inventoryPollSeconds: 0.2`),
      );
      await runAgent([
        "enroll",
        "--config",
        config,
        "--coordinator",
        c.address,
        "--token",
        await c.enrollToken("mover-1"),
        "--ca-file",
        c.caFile,
      ]);
      const { target, pid } = await startDaemon(config);
      // Enrolled: mutual TLS on TCP (and the check above sees TCP listeners).
      expect(target).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(await tcpListeners(pid)).toHaveLength(1);
      const host = await eventually("mover-1 online", async () => {
        const h = (await c.admin().listHosts({})).hosts.find((x) => x.hostId === "mover-1");
        return h?.status === "online" ? h : undefined;
      });
      expect(host.vmCount).toBe(0);
      const rec = await c.running.ctx.store.getHost("mover-1");
      expect(rec?.inventory).toMatchObject({
        roles: ["mover"],
        libvirtVersion: "",
        transferAddress: "10.0.0.9",
      });
      // Still online after a few heartbeats (1 s interval, lost after 3 s).
      const seen = rec?.lastSeenMs ?? 0;
      await eventually(
        "a later heartbeat",
        async () => ((await c.running.ctx.store.getHost("mover-1"))?.lastSeenMs ?? 0) > seen,
      );
      await noVirshCalls();
    });
  });
});
