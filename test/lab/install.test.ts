import { chmod, cp, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseDocument } from "yaml";
import { loadAgentConfig } from "../../agent/src/config/AgentConfig.js";
import { loadCoordinatorConfig } from "../../coordinator/src/config/CoordinatorConfig.js";
import { eventually } from "../support/coordinatorHarness.js";
import { REPO_ROOT } from "./support/labPaths.js";

/**
 * The operator's path, end to end: scripts/package.sh builds the release tarball, scripts/install.sh
 * installs both roles under a temporary --root (never the host's /etc, /opt or /var), and the
 * INSTALLED daemons run exactly as their installed units say (ExecStart, User/Group, Environment,
 * NoNewPrivileges). No systemd runs here, so the units' sandboxing is checked by
 * `systemd-analyze verify` only.
 */

let root = "";
let tarball = "";
const prefix = () => join(root, "opt/cairn");
const etc = () => join(root, "etc/cairn");
const coordState = () => join(root, "var/lib/cairn-coordinator");
const unitFile = (role: string) => join(root, "etc/systemd/system", `cairn-${role}.service`);
const cairnBin = () => join(root, "usr/local/bin/cairn");
const installSh = join(REPO_ROOT, "scripts/install.sh");
const started: ResultPromise[] = [];

const install = (args: string[]) =>
  execa("bash", [installSh, "--root", root, "--tarball", tarball, ...args], { reject: false, all: true });

/** A user of the installed system: <root>/etc/passwd is its user database (install.sh --root). */
async function userIds(user: string): Promise<{ uid: number; gid: number; home: string }> {
  const line = (await readFile(join(root, "etc/passwd"), "utf8"))
    .split("\n")
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} in ${root}/etc/passwd`);
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/" };
}

async function groupId(group: string): Promise<number> {
  const line = (await readFile(join(root, "etc/group"), "utf8"))
    .split("\n")
    .find((l) => l.startsWith(`${group}:`));
  if (!line) throw new Error(`no group ${group} in ${root}/etc/group`);
  return Number(line.split(":")[2]);
}

interface Unit {
  execStart: string[];
  user: string;
  group: string;
  environment: Record<string, string>;
  noNewPrivileges: boolean;
}

/** The [Service] settings that decide how the daemon runs, from an installed unit file. */
async function readUnit(role: string): Promise<Unit> {
  const text = await readFile(unitFile(role), "utf8");
  const values = (key: string) =>
    [...text.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1] ?? "");
  const execStart = values("ExecStart");
  if (execStart.length !== 1 || /["'\\$%]/.test(execStart[0] ?? ""))
    throw new Error(
      `expected one ExecStart without quoting, escapes or specifiers: ${execStart.join(" | ")}`,
    );
  const environment: Record<string, string> = {};
  for (const v of values("Environment"))
    for (const a of v.split(/\s+/).filter(Boolean)) {
      const eq = a.indexOf("=");
      environment[a.slice(0, eq)] = a.slice(eq + 1);
    }
  const user = values("User").at(-1) || "root";
  return {
    execStart: (execStart[0] ?? "").trim().split(/\s+/),
    user,
    group: values("Group").at(-1) || user,
    environment,
    noNewPrivileges: values("NoNewPrivileges").at(-1) === "yes",
  };
}

/** argv and environment of a command run as the unit's user, the way systemd would start it. */
async function asUnit(unit: Unit, argv: string[]) {
  const u = await userIds(unit.user);
  const gid = await groupId(unit.group);
  return {
    argv: [
      "setpriv",
      `--reuid=${u.uid}`,
      `--regid=${gid}`,
      "--clear-groups",
      ...(unit.noNewPrivileges ? ["--no-new-privs"] : []),
      "--",
      ...argv,
    ],
    // systemd's environment: its PATH, the user's identity, the unit's Environment=; nothing of ours.
    env: {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: u.home,
      USER: unit.user,
      LOGNAME: unit.user,
      ...unit.environment,
    },
  };
}

/** Starts the installed daemon from its unit's ExecStart; resolves with the gRPC port it prints. */
async function startFromUnit(role: string): Promise<{ child: ResultPromise; port: number }> {
  const unit = await readUnit(role);
  const { argv, env } = await asUnit(unit, unit.execStart);
  const child = execa(argv[0] as string, argv.slice(1), { env, extendEnv: false, cwd: "/", reject: false });
  started.push(child);
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`cairn-${role} did not start in 60 s: ${stderr}`)), 60_000);
    child.stdout?.on("data", (b: Buffer) => {
      const m = /listening on port (\d+)/.exec(b.toString());
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    void child.then((r) => {
      clearTimeout(t);
      reject(new Error(`cairn-${role} exited ${r.exitCode}: ${stderr}`));
    });
  });
  return { child, port };
}

/** Edits an installed YAML config as an operator would, keeping its comments. */
async function editConfig(file: string, set: [string[], unknown][]): Promise<void> {
  const doc = parseDocument(await readFile(file, "utf8"));
  for (const [path, value] of set) doc.setIn(path, value);
  await writeFile(file, doc.toString());
}

async function stop(child: ResultPromise): Promise<void> {
  if (child.exitCode !== null && child.exitCode !== undefined) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await child;
  clearTimeout(t);
}

beforeAll(async () => {
  // The real packaging, build included: the tarball is what an operator would copy to a host.
  const pkg = await execa("bash", [join(REPO_ROOT, "scripts/package.sh")], { cwd: REPO_ROOT });
  tarball = pkg.stdout.trim().split("\n").at(-1) ?? "";
  expect(tarball).toMatch(/dist-release\/cairn-\d+\.\d+\.\d+[^/]*-linux-x64\.tar\.gz$/);
  const runRoot = join(inject("cairnLab").runRoot, "tmp");
  await mkdir(runRoot, { recursive: true });
  root = await mkdtemp(join(runRoot, "install-"));
  await chmod(root, 0o755); // the cairn user must reach the release below it
  // The installed system's user database starts as this host's, so the ids useradd picks are free here too.
  await mkdir(join(root, "etc"));
  await cp("/etc/passwd", join(root, "etc/passwd"));
  await cp("/etc/group", join(root, "etc/group"));
});

afterAll(async () => {
  for (const c of started) await stop(c);
  if (root) await rm(root, { recursive: true, force: true });
});

describe("package.sh + install.sh: the installed Cairn runs as its units say", () => {
  it("install.sh refuses what it cannot do, and says what is wrong", async () => {
    const unknown = await install(["--role", "backup"]);
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.all).toMatch(/unknown role 'backup': use coordinator, agent or mover/);
    const noRole = await install([]);
    expect(noRole.all).toMatch(/--role is required/);
    const missing = await execa(
      "bash",
      [installSh, "--role", "agent", "--root", root, "--tarball", join(root, "nope.tar.gz")],
      { reject: false, all: true },
    );
    expect(missing.exitCode).not.toBe(0);
    expect(missing.all).toMatch(/tarball .*nope\.tar\.gz not found/);
    // As a user (the script read from stdin: the checkout may not be readable to nobody).
    const asNobody = await execa(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--", "--role", "agent"],
      { reject: false, all: true, inputFile: installSh, cwd: "/" },
    );
    expect(asNobody.exitCode).not.toBe(0);
    expect(asNobody.all).toMatch(/must run as root/);
    // Nothing was installed by the refused runs.
    await expect(lstat(prefix())).rejects.toThrow(/ENOENT/);
  });

  it("installs every role: release + symlink, the cairn user, state dirs, units, configs, links; again keeps the operator's config", async () => {
    for (const role of ["coordinator", "agent", "mover"]) {
      const r = await install(["--role", role]);
      expect(r.exitCode, r.all).toBe(0);
    }
    const version = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")).version;
    expect(await readlink(prefix())).toBe(`cairn-${version}`);
    // Production dependencies only, native addons compiled; nothing resolves from the checkout.
    const modules = join(prefix(), "node_modules");
    await expect(
      stat(join(modules, "better-sqlite3/build/Release/better_sqlite3.node")),
    ).resolves.toBeDefined();
    for (const dev of ["vitest", "typescript", "@biomejs/biome", "tsx"])
      await expect(lstat(join(modules, dev)), dev).rejects.toThrow(/ENOENT/);
    const cairn = await userIds("cairn");
    expect(cairn.uid).toBeGreaterThan(0);
    const cs = await stat(coordState());
    expect([cs.uid, cs.gid, cs.mode & 0o777]).toEqual([cairn.uid, await groupId("cairn"), 0o700]);
    const as = await stat(join(root, "var/lib/cairn-agent"));
    expect([as.uid, as.mode & 0o777]).toEqual([0, 0o711]);
    expect(await readlink(cairnBin())).toBe(join(prefix(), "cli/bin/cairn.cjs"));
    expect(await readlink(join(root, "usr/local/bin/cairn-agent"))).toBe(
      join(prefix(), "agent/bin/cairn-agent.cjs"),
    );
    // The installed example configs load with the daemons' own loaders and name the install's paths.
    expect((await loadCoordinatorConfig(join(etc(), "coordinator.yaml.example"))).stateDir).toBe(
      coordState(),
    );
    expect((await loadAgentConfig(join(etc(), "agent.yaml.example"))).stateDir).toBe(
      join(root, "var/lib/cairn-agent"),
    );
    // A mover: its own unit, config and state directory; an agent without libvirt.
    const mover = await loadAgentConfig(join(etc(), "mover.yaml.example"));
    expect([mover.stateDir, mover.roles]).toEqual([join(root, "var/lib/cairn-mover"), ["mover"]]);
    const ms = await stat(join(root, "var/lib/cairn-mover"));
    expect([ms.uid, ms.mode & 0o777]).toEqual([0, 0o711]);
    expect((await readUnit("mover")).execStart).toContain(join(etc(), "mover.yaml"));
    // The coordinator reads its config as the cairn user.
    const cc = await stat(join(etc(), "coordinator.yaml"));
    expect([cc.uid, cc.gid, cc.mode & 0o777]).toEqual([0, await groupId("cairn"), 0o640]);

    // Idempotent: a second run changes no user, keeps the operator's edits, and still works.
    const edited = `${await readFile(join(etc(), "coordinator.yaml"), "utf8")}# edited by the operator\n`;
    await writeFile(join(etc(), "coordinator.yaml"), edited);
    const again = await install(["--role", "coordinator"]);
    expect(again.exitCode, again.all).toBe(0);
    expect(again.all).not.toMatch(/created system user/);
    expect(await readFile(join(etc(), "coordinator.yaml"), "utf8")).toBe(edited);
    expect((await userIds("cairn")).uid).toBe(cairn.uid);
    expect(await readlink(prefix())).toBe(`cairn-${version}`);
  });

  it("systemd-analyze verify accepts the installed units", async () => {
    const r = await execa(
      "systemd-analyze",
      ["verify", unitFile("coordinator"), unitFile("agent"), unitFile("mover")],
      {
        reject: false,
        all: true,
      },
    );
    expect(r.all).toBe("");
    expect(r.exitCode).toBe(0);
    // The units start what was installed, not the checkout.
    for (const role of ["coordinator", "agent", "mover"])
      expect((await readUnit(role)).execStart.find((a) => a.endsWith(".js") || a.endsWith(".cjs"))).toMatch(
        new RegExp(`^${prefix()}/`),
      );
  });

  it("the installed coordinator (as cairn) and agent (as root) start from their units' ExecStart; the agent enrolls and reports", async () => {
    const coordinatorUnit = await readUnit("coordinator");
    expect(coordinatorUnit.user).toBe("cairn");
    const coordinatorYaml = join(etc(), "coordinator.yaml");
    await editConfig(coordinatorYaml, [
      [["listen"], "127.0.0.1:0"],
      [["metricsListen"], ""],
      [["logLevel"], "warn"],
    ]);
    // `cairn ca init` as the unit's user, so the daemon can read what it creates.
    const init = await asUnit(coordinatorUnit, [
      cairnBin(),
      "ca",
      "init",
      "--config",
      coordinatorYaml,
      "--json",
    ]);
    const ca = await execa(init.argv[0] as string, init.argv.slice(1), {
      env: init.env,
      extendEnv: false,
      cwd: "/",
    });
    const { caFile, tokenFile } = JSON.parse(ca.stdout) as { caFile: string; tokenFile: string };
    expect(caFile).toBe(join(coordState(), "pki/ca.pem"));

    const coordinator = await startFromUnit("coordinator");
    const cli = (args: string[]) =>
      execa(
        cairnBin(),
        [
          ...args,
          "--coordinator",
          `127.0.0.1:${coordinator.port}`,
          "--ca-file",
          caFile,
          "--token-file",
          tokenFile,
        ],
        { cwd: "/" },
      );
    const token = JSON.parse((await cli(["hosts", "enroll-token", "installed-host", "--json"])).stdout).token;
    expect(token).toMatch(/\w/);

    const agentYaml = join(etc(), "agent.yaml");
    await editConfig(agentYaml, [
      [["listen"], "127.0.0.1:0"],
      [["logLevel"], "warn"],
      [["coordinator", "address"], `127.0.0.1:${coordinator.port}`],
      [["coordinator", "inventoryPollSeconds"], 1],
    ]);
    const doc = parseDocument(await readFile(agentYaml, "utf8"));
    doc.deleteIn(["coordinator", "advertiseAddress"]); // the coordinator dials the port the agent binds
    await writeFile(agentYaml, doc.toString());
    const enroll = await execa(
      join(root, "usr/local/bin/cairn-agent"),
      [
        "enroll",
        "--config",
        agentYaml,
        "--token",
        token,
        "--ca-file",
        caFile,
        "--hostname",
        "installed-host",
      ],
      { cwd: "/" },
    );
    expect(enroll.stdout).toMatch(/enrolled as host installed-host/);
    const agentUnit = await readUnit("agent");
    expect(agentUnit.user).toBe("root");
    await startFromUnit("agent");

    const host = await eventually(
      "the installed agent online in `cairn hosts list`",
      async () => {
        const hosts = JSON.parse((await cli(["hosts", "list", "--json"])).stdout) as {
          hostId: string;
          status: string;
        }[];
        return hosts.find((h) => h.hostId === "installed-host" && h.status === "online");
      },
      60_000,
    );
    expect(host).toBeDefined();
    for (const c of started.splice(0)) await stop(c);
  });
});
