/**
 * The README's demo: coordinator + agent on this machine with the embedded defaults (SQLite, a
 * local repository), a lab VM, a policy, a full and an incremental backup with guest writes in
 * between, a restore of the disk, and a byte-for-byte check. Every step uses the real daemons and
 * the real `cairn` CLI; the output says what happened and where everything is.
 *
 * Run through scripts/demo.sh (it installs and builds first). `--keep` leaves the daemons and the
 * VM running afterwards for exploring.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { Lab } from "../../test/lab/support/lab.js";
import { REPO_ROOT } from "../../test/lab/support/labPaths.js";
import { prepareLab } from "../../test/lab/support/prepareLab.js";

const keep = process.argv.includes("--keep");
const ROOT = process.env.CAIRN_DEMO_DIR ?? "/var/lib/cairn-demo";
const COORD = join(ROOT, "coordinator");
const AGENT = join(ROOT, "agent");
const REPO = join(ROOT, "repository");
const PORT = 7450;
const AGENT_PORT = 7460;
const METRICS = 9450;
const dist = (p: string) => join(REPO_ROOT, "dist", p);
// The bins: CommonJS shims that size libuv's threadpool before the ES module entry loads.
const CAIRN_BIN = join(REPO_ROOT, "cli/bin/cairn.cjs");
const AGENT_BIN = join(REPO_ROOT, "agent/bin/cairn-agent.cjs");
const t0 = Date.now();

const say = (s: string) => process.stdout.write(`[demo +${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);
const env = {
  ...process.env,
  CAIRN_COORDINATOR: `127.0.0.1:${PORT}`,
  CAIRN_CA_FILE: join(COORD, "pki", "ca.pem"),
  CAIRN_TOKEN_FILE: join(COORD, "admin.token"),
};

/** Runs the real CLI; shows the command and its output, like an operator would see it. */
async function cairn(args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  process.stdout.write(`\n  $ cairn ${args.join(" ")}\n`);
  const r = await execa("node", [CAIRN_BIN, ...args], {
    env,
    reject: false,
    stderr: "inherit",
  });
  if (!opts.quiet) process.stdout.write(r.stdout.replace(/^/gm, "    ") + "\n");
  if (r.exitCode !== 0) throw new Error(`cairn ${args.join(" ")} failed with exit code ${r.exitCode}`);
  return r.stdout;
}

/** Starts a daemon and resolves once it says `ready` (wrapped: a subprocess is itself a promise). */
function daemon(
  name: string,
  script: string,
  args: string[],
  logFile: string,
  ready: RegExp,
): Promise<{ child: ResultPromise }> {
  const child = execa("node", [script, ...args], { env, reject: false, stderr: { file: logFile } });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} did not start in 60 s; see ${logFile}`)), 60_000);
    child.stdout?.on("data", (b: Buffer) => {
      if (ready.test(b.toString())) {
        clearTimeout(t);
        resolve({ child });
      }
    });
    void child.then((r) => reject(new Error(`${name} exited with ${r.exitCode}; see ${logFile}`)));
  });
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const b of createReadStream(path)) h.update(b as Buffer);
  return h.digest("hex");
}

const prepared = await prepareLab();
say(`lab ${prepared.summary}`);
const lab = new Lab(prepared.config);
const children: ResultPromise[] = [];
let ok = false;
try {
  // A fresh demo every run: the previous one's state is removed first.
  await rm(ROOT, { recursive: true, force: true });
  await mkdir(ROOT, { recursive: true });
  await chmod(ROOT, 0o711);
  say(
    "1. coordinator: CA, certificate, bootstrap admin token (cairn ca init), local repository (cairn repo init)",
  );
  await cairn(["ca", "init", "--state-dir", COORD]);
  await cairn(["repo", "init", REPO]);
  await writeFile(
    join(COORD, "coordinator.yaml"),
    `stateDir: ${COORD}\nlisten: "127.0.0.1:${PORT}"\nmetricsListen: "127.0.0.1:${METRICS}"\nlogLevel: info\n`,
  );
  children.push(
    (
      await daemon(
        "cairn-coordinator",
        dist("coordinator/src/main.js"),
        ["--config", join(COORD, "coordinator.yaml")],
        join(ROOT, "coordinator.log"),
        /listening on port/,
      )
    ).child,
  );
  say(
    `   cairn-coordinator runs: gRPC 127.0.0.1:${PORT} (mutual TLS), metrics http://127.0.0.1:${METRICS}/metrics, SQLite ${join(COORD, "coordinator.db")}`,
  );

  say(
    "2. a lab VM (tiny Debian kernel + busybox + qemu-guest-agent, TCG): vda ext4 at /data, vdb a raw volume",
  );
  const vm = await lab.createVm({
    label: "demo",
    disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 128 }],
  });
  await vm.boot();
  say(`   ${vm.name} is running; its guest agent answers`);

  say("3. agent: enroll with a one-time token, then run cairn-agent (mutual TLS both ways)");
  const token = (await cairn(["hosts", "enroll-token", "demo-host", "--json"], { quiet: true })).trim();
  await mkdir(AGENT, { recursive: true });
  await chmod(AGENT, 0o711);
  await writeFile(
    join(AGENT, "agent.yaml"),
    `stateDir: ${AGENT}\nlisten: "127.0.0.1:${AGENT_PORT}"\nlogLevel: info\ncoordinator:\n  address: "127.0.0.1:${PORT}"\n  inventoryPollSeconds: 2\n`,
  );
  const enroll = await execa(
    "node",
    [
      AGENT_BIN,
      "enroll",
      "--config",
      join(AGENT, "agent.yaml"),
      "--coordinator",
      `127.0.0.1:${PORT}`,
      "--token",
      JSON.parse(token).token,
      "--ca-file",
      env.CAIRN_CA_FILE,
      "--hostname",
      "demo-host",
    ],
    { env },
  );
  process.stdout.write(`    ${enroll.stdout}\n`);
  children.push(
    (
      await daemon(
        "cairn-agent",
        AGENT_BIN,
        ["--config", join(AGENT, "agent.yaml")],
        join(ROOT, "agent.log"),
        /listening on port/,
      )
    ).child,
  );
  for (let i = 0; i < 100; i++) {
    if ((await cairn(["vms", "list", "--json"], { quiet: true })).includes(vm.name)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await cairn(["hosts", "list"]);
  await cairn(["vms", "list"]);

  say("4. register the repository and apply a policy (YAML)");
  await cairn(["repo", "add", "main", REPO]);
  const policyFile = join(ROOT, "policy.yaml");
  await writeFile(
    policyFile,
    `name: demo
selector:
  names: [${vm.name}]
schedule:
  cron: "0 2 * * *"
  timezone: UTC
mode:
  kind: incremental
  fullEvery: 7
quiesce: preferred
retention:
  keepLast: 7
  daily: 7
repository: main
`,
  );
  await cairn(["policies", "apply", "-f", policyFile]);
  await cairn(["policies", "list"]);

  say(
    "5. guest writes (a file on ext4, 16 MiB on the raw volume), then a full backup (guest frozen for the instant the point in time is taken)",
  );
  await vm.writeFile("/data/ledger.txt", `first entry ${new Date().toISOString()}\n`);
  await vm.writeRandom("/dev/vdb", 0, 16 << 20);
  await vm.sh("sync");
  await cairn(["backup", "now", vm.name, "--wait"]);

  say(
    "6. more guest writes (the file, 4 MiB at 64 MiB on the raw volume), then an incremental backup: only changed blocks are read",
  );
  const ledger = `first entry\nsecond entry ${new Date().toISOString()}\n`;
  await vm.writeFile("/data/ledger.txt", ledger);
  await vm.writeRandom("/dev/vdb", 64 << 20, 4 << 20);
  await vm.sh("sync");
  const incr = JSON.parse(await cairn(["backup", "now", vm.name, "--wait", "--json"], { quiet: true }));
  process.stdout.write(
    `    job ${incr.jobId}: ${incr.state}, snapshot ${incr.snapshotId}, ${JSON.stringify(incr.diskKinds)}\n`,
  );
  await cairn(["snapshots", "list"]);
  await cairn(["jobs", "list"]);

  say("7. restore both disks of the incremental snapshot and check them against the guest");
  const restoredVdb = join(ROOT, "restored-vdb.raw");
  const restoredVda = join(ROOT, "restored-vda.raw");
  await cairn(["restore", "disk", incr.snapshotId, "vdb", "--to", restoredVdb]);
  await cairn(["restore", "disk", incr.snapshotId, "vda", "--to", restoredVda]);
  // The raw volume is not written after the backup: byte for byte against the guest's device.
  const [guestHash, restoredHash] = await Promise.all([vm.deviceHash("/dev/vdb"), sha256File(restoredVdb)]);
  process.stdout.write(
    `    guest /dev/vdb        sha256 ${guestHash}\n    restored vdb.raw      sha256 ${restoredHash}\n`,
  );
  if (guestHash !== restoredHash) throw new Error("the restored raw volume differs from the guest's");
  // A mounted ext4 is never byte-identical to its frozen point in time (thaw rewrites the
  // superblock), so its check is the file the guest wrote, read from the restored image.
  const fromImage = (await execa("debugfs", ["-R", "cat /ledger.txt", restoredVda], { stderr: "ignore" }))
    .stdout;
  process.stdout.write(
    `    /data/ledger.txt in the restored ext4 image:\n${fromImage.replace(/^/gm, "      ")}\n`,
  );
  if (`${fromImage}\n` !== ledger && fromImage !== ledger)
    throw new Error("the restored ext4 image lacks the guest's file");
  say("   vdb byte for byte identical; vda holds the guest's file as written");
  await cairn(["repo", "verify", "main", "--read-data"]);
  await cairn(["repo", "stats", "main"]);
  const metrics = await (await fetch(`http://127.0.0.1:${METRICS}/metrics`)).text();
  process.stdout.write(
    `\n  metrics (excerpt):\n${metrics
      .split("\n")
      .filter((l) => /^cairn_(job_transitions_total|backup_bytes|freeze_window_seconds_count|jobs\{)/.test(l))
      .map((l) => `    ${l}`)
      .join("\n")}\n`,
  );
  ok = true;
  say("done: coordinator + agent brought up, full and incremental backups taken, disk restored and verified");
  process.stdout.write(
    [
      "",
      "Where things are:",
      `  state, logs        ${ROOT} (coordinator.log, agent.log)`,
      `  coordinator DB     ${join(COORD, "coordinator.db")}`,
      `  repository         ${REPO}`,
      `  restored disks     ${restoredVda}, ${restoredVdb}`,
      `  admin token        ${env.CAIRN_TOKEN_FILE}`,
      "Try (with the environment below):",
      `  export CAIRN_COORDINATOR=${env.CAIRN_COORDINATOR} CAIRN_CA_FILE=${env.CAIRN_CA_FILE} CAIRN_TOKEN_FILE=${env.CAIRN_TOKEN_FILE}`,
      "  node cli/bin/cairn.cjs jobs list | snapshots list | audit list",
      keep
        ? "The daemons and the VM keep running (--keep); stop them with: pkill -f dist/(agent|coordinator)/src/main.js"
        : "",
      "",
    ].join("\n"),
  );
} catch (err) {
  process.stderr.write(
    `\n[demo] FAILED: ${(err as Error).message}\n[demo] logs: ${ROOT}/coordinator.log, ${ROOT}/agent.log\n`,
  );
} finally {
  if (!keep || !ok) {
    for (const c of children.reverse()) c.kill("SIGTERM");
    await Promise.allSettled(children);
    await lab.dispose();
    await prepared.teardown();
  }
}
process.exit(ok ? 0 : 1);
