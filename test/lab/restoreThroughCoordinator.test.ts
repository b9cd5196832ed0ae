import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobSummary } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { cairnCli, coordinatorArgs } from "../support/cairnCli.js";
import {
  eventually,
  startTestCoordinator,
  type TestCoordinator,
  waitForJobEnd,
} from "../support/coordinatorHarness.js";
import { LabAgent } from "./support/LabAgent.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { LAB_DOMAIN_PREFIX } from "./support/labPaths.js";
import { run, waitFor } from "./support/run.js";

// End to end (docs/restore.md §1, §3): a lab VM backed up through a real coordinator by a real
// agent daemon, then `cairn restore vm` through the CLI, to a new domain and in place.
const lab = new Lab();
let c: TestCoordinator;
let agent: LabAgent;
let vm: LabVm;
let snapshotId: string;
const MARKER = `e2e-${Date.now()}`;
const ORIGINAL_MAC = "52:54:00:c4:1e:01";
const restoredName = `${LAB_DOMAIN_PREFIX}e2e-new-${process.pid}`;
const uri = () => lab.host1.uri;
const virsh = (args: string[], allowFailure = false) =>
  run("virsh", ["-c", uri(), ...args], { allowFailure, timeoutMs: 120_000 });
const cli = (args: string[]) => cairnCli([...args, ...coordinatorArgs(c)], { timeoutMs: 600_000 });

beforeAll(async () => {
  c = await startTestCoordinator({ heartbeatIntervalSeconds: 1, lostAfterSeconds: 4 });
  agent = await LabAgent.enroll(c, "lab-host");
  vm = await lab.createVm({ label: "e2e", disks: [{ kind: "ext4-data" }] });
  // A NIC with a known MAC: the restored domain must not get it (two guests, one MAC).
  const nic = join(vm.dir, "nic.xml");
  await writeFile(
    nic,
    `<interface type='user'><mac address='${ORIGINAL_MAC}'/><model type='virtio'/></interface>\n`,
  );
  await virsh(["attach-device", vm.name, nic, "--config"]);
  await vm.boot();
  await vm.writeFile("/data/marker", MARKER);
  await agent.start();
  await eventually(
    "the VM in the coordinator's inventory",
    async () => (await c.admin().listVms({ hostId: "lab-host" })).vms.some((v) => v.name === vm.name),
    60_000,
  );
  await c.admin().applyPolicy({
    yaml: `name: lab\nselector: {names: [${vm.name}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 7}\nrepository: main\n`,
  });
}, 600_000);

afterAll(async () => {
  await virsh(["destroy", restoredName], true);
  await virsh(["undefine", restoredName, "--nvram"], true);
  await agent?.kill();
  await lab.dispose();
  await c?.dispose();
});

async function guestAgent(name: string, cmd: unknown, allowFailure = false) {
  return run("virsh", ["-c", uri(), "qemu-agent-command", name, JSON.stringify(cmd), "--timeout", "5"], {
    allowFailure,
    timeoutMs: 30_000,
  });
}

/** Waits for guest-ping in `name`, then reads /data/marker through its guest agent. */
async function pingThenMarker(name: string): Promise<string> {
  await waitFor(
    `guest agent of ${name}`,
    async () => ((await guestAgent(name, { execute: "guest-ping" }, true)).exitCode === 0 ? true : undefined),
    { timeoutMs: 180_000, intervalMs: 500 },
  );
  const handle = await waitFor(
    `/data/marker in ${name}`,
    async () => {
      const r = await guestAgent(
        name,
        { execute: "guest-file-open", arguments: { path: "/data/marker" } },
        true,
      );
      return r.exitCode === 0 ? (JSON.parse(r.stdout) as { return: number }).return : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  const read = await guestAgent(name, { execute: "guest-file-read", arguments: { handle, count: 4096 } });
  await guestAgent(name, { execute: "guest-file-close", arguments: { handle } });
  const b64 = (JSON.parse(read.stdout) as { return: { "buf-b64": string } }).return["buf-b64"];
  return Buffer.from(b64, "base64").toString();
}

const macsOf = async (name: string) =>
  (await virsh(["domiflist", name])).stdout
    .split("\n")
    .map((l) => /([0-9a-f]{2}(:[0-9a-f]{2}){5})/.exec(l)?.[1])
    .filter((m): m is string => Boolean(m));

describe("restore vm through the coordinator and a real agent", () => {
  it("backed up through the coordinator, restored by `cairn restore vm` to a new qcow2 domain that boots with its files", async () => {
    const { jobId } = await c.admin().backupNow({ vm: vm.name, policy: "", mode: 0 });
    const full = await waitForJobEnd(c, jobId, 300_000);
    expect(full, full.reason).toMatchObject({ state: "succeeded", mode: "full" });
    snapshotId = full.snapshotId as string;

    const dir = join(c.dir, "restored");
    await mkdir(dir, { mode: 0o711 });
    const r = await cli([
      "restore",
      "vm",
      snapshotId,
      "--name",
      restoredName,
      "--storage",
      dir,
      "--format",
      "qcow2",
      "--start",
      "--json",
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout.trim().split("\n").at(-1) as string) as JobSummary;
    expect(job).toMatchObject({ kind: "restore-vm", state: "succeeded", snapshotId, hostId: "lab-host" });
    const outcome = job.restore?.outcome;
    expect(outcome?.$case).toBe("vm");
    if (outcome?.$case !== "vm") return;
    const path = join(dir, `${restoredName}-vda.qcow2`);
    expect(outcome.value).toMatchObject({ domainName: restoredName, started: true, inPlace: false });
    expect(outcome.value.disks.map((d) => [d.target, d.path, d.format])).toEqual([["vda", path, "qcow2"]]);

    // `jobs show` prints what the restore wrote.
    const shown = await cli(["jobs", "show", job.jobId]);
    expect(shown.exitCode, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^kind: +restore-vm$/m);
    expect(shown.stdout).toMatch(/^state: +succeeded$/m);
    expect(shown.stdout).toContain(`snapshot:    ${snapshotId}`);
    expect(shown.stdout).toContain(`domain:      ${restoredName} (${outcome.value.domainUuid}), started`);
    expect(shown.stdout).toMatch(new RegExp(`^disk vda: +${path} \\(qcow2, `, "m"));

    // A new domain: running, its own uuid and MACs, the guest's files.
    expect((await virsh(["domstate", restoredName])).stdout.trim()).toBe("running");
    const uuid = (await virsh(["domuuid", restoredName])).stdout.trim();
    expect(uuid).toBe(outcome.value.domainUuid);
    expect(uuid).not.toBe((await virsh(["domuuid", vm.name])).stdout.trim());
    expect(await macsOf(vm.name)).toEqual([ORIGINAL_MAC]);
    const macs = await macsOf(restoredName);
    expect(macs).toHaveLength(1);
    expect(macs).not.toContain(ORIGINAL_MAC);
    expect(await pingThenMarker(restoredName)).toBe(MARKER);
    await virsh(["destroy", restoredName]);
    await virsh(["undefine", restoredName, "--nvram"]);
  }, 900_000);

  it("in place over the shut-off original: the guest's files put back; the chain says full, restored in place; the next real backup is full", async () => {
    // The guest changes its file after the backup; the restore must put the backed-up one back.
    await vm.writeFile("/data/marker", "changed after the backup");
    await vm.shutdown();
    const r = await cli(["restore", "vm", snapshotId, "--in-place", "--force"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`domain: ${vm.name} (`);
    expect(r.stdout).toContain(", in place");
    const jobId = /^job (\S+) succeeded: restore-vm/m.exec(r.stdout)?.[1] as string;
    expect(jobId).toBeTruthy();

    const reason = new RegExp(`restored in place from ${snapshotId} \\(job ${jobId}\\)`);
    const chain = await cli(["vms", "chain", vm.name]);
    expect(chain.exitCode, chain.stderr).toBe(0);
    expect(chain.stdout).toMatch(new RegExp(`vda: will be read in full: ${reason.source}`));

    await vm.boot();
    expect(await vm.readFile("/data/marker")).toBe(MARKER);
    // The policy's next backup would be incremental; the restore makes it full, and the backup
    // records the ledger's reason (RunBackupRequest.full_reasons).
    const next = await waitForJobEnd(
      c,
      (await c.admin().backupNow({ vm: vm.name, policy: "", mode: 0 })).jobId,
      300_000,
    );
    expect(next, next.reason).toMatchObject({ state: "succeeded", mode: "incremental" });
    expect(next.diskKinds.vda).toMatch(new RegExp(`^full: ${reason.source}`));
    const after = await cli(["vms", "chain", vm.name]);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(after.stdout).toMatch(/vda: incremental chain of 1, last checkpoint /);
    expect(after.stdout).toMatch(new RegExp(`broken .*${reason.source}`));
  }, 900_000);
});
