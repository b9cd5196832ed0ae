import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCheckpointXml } from "../../agent/src/hypervisor/parseCheckpointXml.js";
import { JobRegistry } from "../../agent/src/jobs/JobRegistry.js";
import { chainRpcs } from "../../agent/src/server/chainRpcs.js";
import { type BackupRpcDeps, runBackupRpc } from "../../agent/src/server/runBackupRpc.js";
import {
  type BackupResult,
  type CheckpointRecord,
  RunBackupRequest,
} from "../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabHost } from "./support/LabHost.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run, waitFor } from "./support/run.js";

const MiB = 1024 * 1024;
const log = createLogger("agent-chain-per-disk", process.env.CAIRN_TEST_LOG ?? "silent");
const ctx = () => ({ signal: AbortSignal.timeout(120_000) }) as never;

// libvirt validates a redefined checkpoint whole; the agent must keep the chains of the disks
// whose bitmaps survived and demote only the others (issue #21).
describe("RedefineCheckpoints per disk on two lab hosts", () => {
  const lab = new Lab();
  const disposers: (() => Promise<void>)[] = [];
  let vm: LabVm;
  let uuid: string;
  let host2: LabHost;
  let repoDir: string;
  let repo: Repository;
  let jobN = 0;
  let harness: Awaited<ReturnType<typeof agentHarness>>;

  async function agentOn(host: LabHost) {
    const h = await agentHarness(host);
    disposers.push(h.dispose);
    harness = h;
    const { repository: _unused, ...backup } = h.deps;
    const deps: BackupRpcDeps = {
      backup,
      config: h.config,
      jobs: new JobRegistry(),
      openRepository: () => Repository.open(new LocalObjectStore(repoDir)),
    };
    return {
      chain: chainRpcs({ hypervisor: h.deps.hypervisor, log }),
      async backup(mode: BackupMode): Promise<BackupResult> {
        const req = RunBackupRequest.fromPartial({
          jobId: `per-disk-job-${++jobN}`,
          domainUuid: uuid,
          repository: repoDir,
          mode,
        });
        let last: unknown;
        for await (const ev of runBackupRpc(deps, req, ctx())) last = ev.event;
        const r = last as { $case: string; value: BackupResult } | undefined;
        if (r?.$case !== "result") throw new Error(`no result: ${JSON.stringify(r)}`);
        return r.value;
      },
    };
  }
  const qmp = async <T>(execute: string, args: unknown): Promise<T> =>
    JSON.parse(
      (
        await run("virsh", [
          "-c",
          vm.host.uri,
          "qemu-monitor-command",
          vm.name,
          JSON.stringify({ execute, arguments: args }),
        ])
      ).stdout,
    ).return as T;
  const restoredMatches = async (snapshotId: string, target: string) =>
    (await harness.restoredHash(snapshotId, target, repo)) === (await vm.deviceHash(`/dev/${target}`));

  beforeAll(async () => {
    const t = Date.now();
    host2 = await lab.startSecondHost();
    vm = await lab.createVm({
      label: "perdisk",
      disks: [
        { kind: "blank", format: "qcow2", sizeMiB: 32, randomMiB: 8 },
        { kind: "blank", format: "qcow2", sizeMiB: 32, randomMiB: 8 },
      ],
    });
    uuid = (await vm.virsh(["domuuid", vm.name])).stdout.trim();
    repoDir = join(vm.dir, "repo");
    repo = await Repository.init(new LocalObjectStore(repoDir), { chunkSize: 256 * 1024 });
    await vm.boot();
    console.log(`[lab] agentChainPerDisk setup in ${Date.now() - t} ms`);
  }, 300_000);
  afterAll(async () => {
    for (const d of disposers.splice(0)) await d().catch(() => {});
    await repo?.close();
    await lab.dispose();
  });

  it("one disk's bitmap removed on the destination: that disk demoted (missing), the other kept; the next backup reads only the demoted one in full; restores exact", async () => {
    const a1 = await agentOn(lab.host1);
    const full = await a1.backup(BackupMode.BACKUP_MODE_FULL);
    const records: CheckpointRecord[] = [full.checkpoint!];
    const cp = records[0]!.name;

    await vm.migrate(host2);
    const a2 = await agentOn(host2);
    await waitFor(
      "both bitmaps in the destination's QEMU",
      async () =>
        (await a2.chain.describeChain({ domainUuid: uuid }, ctx())).bitmaps.filter((b) => b.name === cp)
          .length === 2
          ? true
          : undefined,
      { timeoutMs: 30_000 },
    );
    // Lose vdb's bitmap in the running QEMU, as a copy without bitmaps would.
    const vdb = vm.disks.find((d) => d.target === "vdb")!;
    const nodes = await qmp<{ "node-name": string; drv: string; file: string }[]>("query-named-block-nodes", {
      flat: true,
    });
    const node = nodes.find((n) => n.drv === "qcow2" && n.file === vdb.path)?.["node-name"];
    expect(node, JSON.stringify(nodes.map((n) => [n["node-name"], n.drv, n.file]))).toBeTruthy();
    await qmp("block-dirty-bitmap-remove", { node, name: cp });

    const r = await a2.chain.redefineCheckpoints({ domainUuid: uuid, checkpoints: records }, ctx());
    console.log(`[lab] per-disk redefine: ${r.elapsedMs.toFixed(0)} ms, ${JSON.stringify(r.verdicts)}`);
    expect(r.redefined).toEqual([cp]);
    expect(r.verdicts.map((v) => [v.target, v.kept])).toEqual([
      ["vda", true],
      ["vdb", false],
    ]);
    expect(r.verdicts[0]!.reason).toBe("");
    expect(r.verdicts[1]!.reason).toMatch(new RegExp(`^bitmap ${cp} of vdb is missing in the running QEMU`));
    const dumped = (await run("virsh", ["-c", host2.uri, "checkpoint-dumpxml", vm.name, cp])).stdout;
    expect(parseCheckpointXml(dumped).bitmaps).toEqual({ vda: cp });
    expect(dumped).toMatch(/<disk name='vdb' checkpoint='no'\/>/);

    await vm.writeRandom("/dev/vda", 4 * MiB, 2 * MiB);
    await vm.writeRandom("/dev/vdb", 4 * MiB, 2 * MiB);
    const inc = await a2.backup(BackupMode.BACKUP_MODE_INCREMENTAL);
    console.log(`[lab] after the per-disk redefine: ${JSON.stringify(inc.diskKinds)}, read ${inc.bytesRead}`);
    expect(inc.diskKinds["vda"]).toBe("incremental");
    expect(inc.diskKinds["vdb"]).toMatch(new RegExp(`^full: checkpoint ${cp} has no bitmap for vdb`));
    // vda's dirty 2 MiB plus all of vdb (8 MiB random, 2 MiB written inside it), not both in full
    expect(Number(inc.bytesRead)).toBeGreaterThanOrEqual(10 * MiB);
    expect(Number(inc.bytesRead)).toBeLessThan(16 * MiB);
    expect(await restoredMatches(inc.snapshotId, "vda")).toBe(true);
    expect(await restoredMatches(inc.snapshotId, "vdb")).toBe(true);

    // The new checkpoint tracks both disks again: vdb's chain starts over.
    await vm.writeRandom("/dev/vdb", 20 * MiB, 1 * MiB);
    const next = await a2.backup(BackupMode.BACKUP_MODE_INCREMENTAL);
    expect(next.diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
    expect(await restoredMatches(next.snapshotId, "vdb")).toBe(true);
  });
});
