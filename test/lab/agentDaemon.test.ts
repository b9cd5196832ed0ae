import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentServiceDefinition, type RunBackupResponse } from "../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode, QuiesceMode } from "../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../shared/src/grpc/wire/backupJobState.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { REPO_ROOT } from "./support/labPaths.js";

const lab = new Lab();
let h: Awaited<ReturnType<typeof agentHarness>>;
let daemon: ResultPromise | undefined;
/** The un-enrolled daemon serves only its unix socket (unix://<stateDir>/agent.sock). */
let target = "";
let vm: LabVm;
let uuid = "";

async function startDaemon(): Promise<void> {
  const config = join(h.dir, "agent.yaml");
  await writeFile(config, `stateDir: ${join(h.dir, "daemon-state")}\nlisten: 127.0.0.1:0\nlogLevel: warn\n`);
  daemon = execa("node", ["--import", "tsx", join(REPO_ROOT, "agent/src/main.ts"), "--config", config], {
    cwd: REPO_ROOT,
    reject: false,
  });
  target = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("agent did not start within 60 s")), 60_000);
    daemon?.stdout?.on("data", (b: Buffer) => {
      const m = /listening on unix socket (\S+)/.exec(b.toString());
      if (m) {
        clearTimeout(t);
        resolve(`unix://${m[1]}`);
      }
    });
    void daemon?.then((r) => reject(new Error(`agent exited: ${r.stderr}`)));
  });
}

beforeAll(async () => {
  h = await agentHarness(lab.host1);
  await mkdir(join(h.dir, "daemon-state"), { recursive: true });
  vm = await lab.createVm({
    label: "daemon",
    disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 640, randomMiB: 512 }],
  });
  await vm.boot();
  uuid = (await vm.virsh(["domuuid", vm.name])).stdout.trim();
  await startDaemon();
});
afterAll(async () => {
  daemon?.kill("SIGKILL");
  await lab.dispose();
  await h?.dispose();
});

const client = () => createClient(AgentServiceDefinition, createChannel(target));

describe("cairn-agent daemon", () => {
  it("RunBackup streams states and progress and ends with the result; the same job id is not run twice", async () => {
    const events: RunBackupResponse[] = [];
    const req = {
      jobId: "d-1",
      domainUuid: uuid,
      repository: join(h.dir, "repo"),
      mode: BackupMode.BACKUP_MODE_AUTO,
      quiesce: QuiesceMode.QUIESCE_MODE_REQUIRED,
    };
    for await (const e of client().runBackup(req)) events.push(e);
    const states = events.flatMap((e) =>
      e.event?.$case === "jobState" ? [backupJobState.fromWire(e.event.value, "job_state")] : [],
    );
    expect(states).toEqual(["quiescing", "reading", "sealing", "succeeded"]);
    expect(events.some((e) => e.event?.$case === "progress")).toBe(true);
    const result = events.at(-1)?.event;
    expect(result?.$case).toBe("result");
    if (result?.$case !== "result") return;
    expect(result.value.quiesced).toBe(true);
    expect(result.value.freezeMs).toBeGreaterThan(0);
    expect(result.value.diskKinds).toMatchObject({
      vda: expect.stringMatching(/^full/),
      vdb: expect.stringMatching(/^full/),
    });
    // Retried job id (e.g. after a coordinator restart): the sealed result comes back, nothing runs.
    const again: RunBackupResponse[] = [];
    for await (const e of client().runBackup(req)) again.push(e);
    expect(again).toHaveLength(1);
    expect(again[0]?.event).toEqual(result);
    const repo = await Repository.open(new LocalObjectStore(join(h.dir, "repo")));
    expect((await repo.listSnapshots()).length).toBe(1);
    await repo.close();
  });

  it("SIGTERM mid-backup: the job is aborted and cleaned up, the guest thawed, the daemon exits 0", async () => {
    const stream = client().runBackup({
      jobId: "d-2",
      domainUuid: uuid,
      repository: join(h.dir, "repo"),
      mode: BackupMode.BACKUP_MODE_FULL,
    });
    let sent = false;
    const outcome = (async () => {
      for await (const e of stream) {
        if (!sent && e.event?.$case === "jobState" && backupJobState.nameOf(e.event.value) === "reading") {
          sent = true;
          daemon?.kill("SIGTERM");
        }
      }
    })().then(
      () => "completed",
      (e: { code?: Status }) => e.code,
    );
    const code = await outcome;
    expect(sent).toBe(true);
    expect([Status.CANCELLED, Status.UNAVAILABLE]).toContain(code);
    const exit = await daemon!;
    expect(exit.exitCode).toBe(0);
    expect(await vm.fsfreezeStatus()).toBe("thawed");
    expect(await h.deps.hypervisor.backupJob(vm.name, AbortSignal.timeout(30_000))).toBeUndefined();
    // Only the first backup's checkpoint remains: the aborted attempt removed its own.
    expect(await h.deps.hypervisor.listCheckpoints(vm.name, AbortSignal.timeout(30_000))).toHaveLength(1);
  });
});
