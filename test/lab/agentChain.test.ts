import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DomainEventFeed, type ResolvedDomainEvent } from "../../agent/src/events/DomainEventFeed.js";
import { VirshDomainEventSource } from "../../agent/src/events/VirshDomainEventSource.js";
import { JobRegistry } from "../../agent/src/jobs/JobRegistry.js";
import { chainRpcs } from "../../agent/src/server/chainRpcs.js";
import { type BackupRpcDeps, runBackupRpc } from "../../agent/src/server/runBackupRpc.js";
import {
  type BackupResult,
  type CheckpointRecord,
  RunBackupRequest,
  type RunBackupResponse,
} from "../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { restoreDisk } from "../../shared/src/repository/restore/restoreDisk.js";
import { agentHarness } from "./support/agentHarness.js";
import { freePort } from "./support/freePort.js";
import type { LabHost } from "./support/LabHost.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { run, waitFor } from "./support/run.js";

const MiB = 1024 * 1024;
const log = createLogger("agent-chain", process.env.CAIRN_TEST_LOG ?? "silent");
const ctx = () => ({ signal: AbortSignal.timeout(120_000) }) as never;

/** One in-process agent per lab host: RunBackup and the chain RPCs, and libvirt's event stream. */
interface HostAgent {
  host: LabHost;
  events: ResolvedDomainEvent[];
  chain: ReturnType<typeof chainRpcs>;
  backup(mode: BackupMode): Promise<RunBackupResponse[]>;
}

describe("the checkpoint ledger's agent side on two lab hosts", () => {
  const lab = new Lab();
  const stop = new AbortController();
  const disposers: (() => Promise<void>)[] = [];
  let vm: LabVm;
  let uuid: string;
  let a1: HostAgent;
  let a2: HostAgent;
  let repo: Repository;
  let jobN = 0;

  async function agentOn(host: LabHost, repoDir: string): Promise<HostAgent> {
    const h = await agentHarness(host);
    disposers.push(h.dispose);
    const { repository: _unused, ...backup } = h.deps;
    const deps: BackupRpcDeps = {
      backup,
      config: h.config,
      jobs: new JobRegistry(),
      // One repository for both hosts, as the coordinator hands out one location.
      openRepository: () => Repository.open(new LocalObjectStore(repoDir)),
    };
    const events: ResolvedDomainEvent[] = [];
    const feed = new DomainEventFeed({
      source: new VirshDomainEventSource({ uri: host.uri, log }),
      hypervisor: h.deps.hypervisor,
      log,
    });
    let connected!: () => void;
    const ready = new Promise<void>((r) => (connected = r));
    const running = feed.run((e) => events.push(e), stop.signal, { onConnected: () => connected() });
    disposers.push(() => running);
    await ready;
    return {
      host,
      events,
      chain: chainRpcs({ hypervisor: h.deps.hypervisor, log }),
      async backup(mode) {
        const req = RunBackupRequest.fromPartial({
          jobId: `chain-job-${++jobN}`,
          domainUuid: uuid,
          repository: repoDir,
          mode,
        });
        const out: RunBackupResponse[] = [];
        for await (const ev of runBackupRpc(deps, req, ctx())) out.push(ev);
        return out;
      },
    };
  }

  const resultOf = (evs: RunBackupResponse[]): BackupResult => {
    const last = evs.at(-1)?.event;
    if (last?.$case !== "result") throw new Error(`no result: ${JSON.stringify(last)}`);
    return last.value;
  };
  const sawEvent = (a: HostAgent, kind: string, detail: string) =>
    waitFor(
      `${kind}/${detail} on ${a.host.name}`,
      async () =>
        a.events.some((e) => e.domainUuid === uuid && e.kind === kind && e.detail === detail)
          ? true
          : undefined,
      {
        timeoutMs: 20_000,
        describe: async () => JSON.stringify(a.events.map((e) => `${e.kind}/${e.detail}`)),
      },
    );

  beforeAll(async () => {
    const t = Date.now();
    const host2 = await lab.startSecondHost();
    vm = await lab.createVm({
      label: "chain",
      disks: [{ kind: "ext4-data" }, { kind: "blank", format: "qcow2", sizeMiB: 64 }],
    });
    uuid = (await vm.virsh(["domuuid", vm.name])).stdout.trim();
    const repoDir = join(vm.dir, "repo");
    repo = await Repository.init(new LocalObjectStore(repoDir), { chunkSize: 256 * 1024 });
    a1 = await agentOn(lab.host1, repoDir);
    a2 = await agentOn(host2, repoDir);
    await vm.boot();
    console.log(`[lab] agentChain setup in ${Date.now() - t} ms`);
  });
  afterAll(async () => {
    stop.abort();
    for (const d of disposers.splice(0)) await d().catch(() => {});
    await repo?.close();
    // The copy-storage migration leaves an inactive definition on host 1 as well.
    await run("virsh", ["-c", lab.host1.uri, "undefine", vm.name, "--checkpoints-metadata"], {
      allowFailure: true,
    });
    await lab.dispose();
  });

  let records: CheckpointRecord[] = [];

  it("full on host 1: checkpoint_pending before the checkpoint exists, its XML in the result", async () => {
    await sawEvent(a1, "started", "booted");
    const evs = await a1.backup(BackupMode.BACKUP_MODE_FULL);
    const pending = evs.find((e) => e.event?.$case === "checkpointPending")?.event;
    const r = resultOf(evs);
    expect(pending?.$case === "checkpointPending" && pending.value).toMatchObject({
      name: r.checkpoint?.name,
      parent: "",
      xml: "",
      bitmaps: { vda: r.checkpoint?.name, vdb: r.checkpoint?.name },
    });
    expect(r.checkpoint?.xml).toContain(`<name>${r.checkpoint?.name}</name>`);
    expect(r.checkpoint?.xml).toContain(uuid);
    records = [r.checkpoint!];
  });

  it("live migration to host 2: typed events on each host; the chain redefined and kept; next backup incremental", async () => {
    await vm.migrate(a2.host);
    await sawEvent(a1, "suspended", "migrated");
    await sawEvent(a1, "stopped", "migrated");
    // libvirt 9.0 sends no "undefined" on the source for --undefinesource (seen here): the
    // agent's inventory poll reports that one (from_libvirt=false).
    console.log(`[lab] host 1 saw: ${a1.events.map((e) => `${e.kind}/${e.detail}`).join(" ")}`);
    console.log(`[lab] host 2 saw: ${a2.events.map((e) => `${e.kind}/${e.detail}`).join(" ")}`);
    await sawEvent(a2, "started", "migrated");
    await sawEvent(a2, "resumed", "migrated");
    expect(a2.events.find((e) => e.kind === "resumed")?.state).toBe("running");
    expect(a1.events.find((e) => e.kind === "stopped" && e.detail === "migrated")?.state).toBe("shutoff");

    const before = await a2.chain.describeChain({ domainUuid: uuid }, ctx());
    expect(before.found).toBe(true);
    expect(before.checkpoints).toEqual([]);
    expect(
      before.bitmaps
        .filter((b) => b.name === records[0]!.name)
        .map((b) => [b.target, b.recording, b.inconsistent])
        .sort(),
    ).toEqual([
      ["vda", true, false],
      ["vdb", true, false],
    ]);
    const r = await a2.chain.redefineCheckpoints({ domainUuid: uuid, checkpoints: records }, ctx());
    console.log(`[lab] redefine after shared-storage migration: ${r.elapsedMs.toFixed(0)} ms`);
    expect(r.redefined).toEqual([records[0]!.name]);
    expect(r.verdicts.map((v) => [v.target, v.kept, v.reason])).toEqual([
      ["vda", true, ""],
      ["vdb", true, ""],
    ]);

    await vm.writeRandom("/dev/vdb", 8 * MiB, 2 * MiB);
    const inc = resultOf(await a2.backup(BackupMode.BACKUP_MODE_INCREMENTAL));
    expect(inc.diskKinds).toEqual({ vda: "incremental", vdb: "incremental" });
    console.log(`[lab] incremental on host 2 read ${inc.bytesRead} bytes after 2 MiB of writes`);
    expect(Number(inc.bytesRead)).toBeGreaterThanOrEqual(2 * MiB);
    expect(Number(inc.bytesRead)).toBeLessThan(6 * MiB);
    expect(inc.checkpoint?.parent).toBe(records[0]!.name);
    records.push(inc.checkpoint!);
    const h = await agentHarnessHash(inc.snapshotId, "vdb");
    expect(h).toBe(await vm.deviceHash("/dev/vdb"));
  });

  /** sha256 of a restored disk, read from the shared repository. */
  async function agentHarnessHash(snapshotId: string, target: string): Promise<string> {
    const { createHash } = await import("node:crypto");
    const { readFile, rm } = await import("node:fs/promises");
    const path = join(vm.dir, `${snapshotId}-${target}.raw`);
    const r = await Repository.open(new LocalObjectStore(join(vm.dir, "repo")));
    try {
      await restoreDisk(await r.openDisk(snapshotId, target), path, { format: "raw" });
      return createHash("sha256")
        .update(await readFile(path))
        .digest("hex");
    } finally {
      await r.close();
      await rm(path, { force: true });
    }
  }

  it("a backup asked for during a migration is deferred (migrating); afterwards the old host says moved", async () => {
    // 1 MiB/s holds the migration long enough to ask (a 256 MiB guest takes > 60 s at that speed);
    // then it is let go at full speed.
    await vm.virsh(["migrate-setspeed", vm.name, "--bandwidth", "1"]);
    const from = a2;
    const migrating = vm.migrate(lab.host1);
    await waitFor(
      "the migration job on host 2",
      async () =>
        (
          await run("virsh", ["-c", from.host.uri, "domjobinfo", vm.name], { allowFailure: true })
        ).stdout.includes("Outgoing migration")
          ? true
          : undefined,
      { timeoutMs: 20_000 },
    );
    const evs = await from.backup(BackupMode.BACKUP_MODE_INCREMENTAL);
    expect(evs.at(-1)?.event).toMatchObject({ $case: "deferred", value: { cause: "migrating" } });
    expect(evs.some((e) => e.event?.$case === "checkpointPending")).toBe(false);
    await run("virsh", ["-c", from.host.uri, "migrate-setspeed", vm.name, "--bandwidth", "100000"]);
    await migrating;
    await sawEvent(a1, "started", "migrated");
    await sawEvent(a2, "stopped", "migrated");
    const moved = await from.backup(BackupMode.BACKUP_MODE_INCREMENTAL);
    expect(moved.at(-1)?.event).toMatchObject({ $case: "deferred", value: { cause: "moved" } });
    await vm.waitForAgent(30_000);
  });

  it("--copy-storage-all to host 2 (keeping host 1's definition): verdicts as QEMU carried the bitmaps; ForgetCheckpoints on host 1", async () => {
    const r1 = await a1.chain.redefineCheckpoints({ domainUuid: uuid, checkpoints: records }, ctx());
    expect(
      r1.verdicts.every((v) => v.kept),
      JSON.stringify(r1.verdicts),
    ).toBe(true);
    // New paths on the destination: libvirt copies the disks over NBD.
    const dst = join(vm.dir, "dst");
    await mkdir(dst, { recursive: true });
    let xml = (await vm.virsh(["dumpxml", vm.name, "--migratable"])).stdout;
    for (const d of vm.disks) {
      const to = join(dst, `${d.target}.qcow2`);
      const size = JSON.parse((await run("qemu-img", ["info", "-U", "--output=json", d.path])).stdout)[
        "virtual-size"
      ];
      await run("qemu-img", ["create", "-q", "-f", "qcow2", to, String(size)]);
      xml = xml.replace(d.path, to);
    }
    await writeFile(join(dst, "domain.xml"), xml);
    await run("chown", ["-R", "libvirt-qemu:kvm", dst]);
    await vm.virsh(
      [
        "migrate",
        "--live",
        "--copy-storage-all",
        "--persistent",
        "--xml",
        join(dst, "domain.xml"),
        vm.name,
        a2.host.uri,
        "--migrateuri",
        `tcp://127.0.0.1:${await freePort([49430, 49499])}`,
      ],
      180_000,
    );
    const stale = vm.host;
    vm.host = a2.host;
    const described = await a2.chain.describeChain({ domainUuid: uuid }, ctx());
    console.log(`[lab] bitmaps after --copy-storage-all: ${JSON.stringify(described.bitmaps)}`);
    const r = await a2.chain.redefineCheckpoints({ domainUuid: uuid, checkpoints: records }, ctx());
    console.log(`[lab] verdicts after --copy-storage-all: ${JSON.stringify(r.verdicts)}`);
    for (const v of r.verdicts) {
      const live = described.bitmaps.find((b) => b.target === v.target && b.name === v.checkpoint);
      // kept exactly when QEMU really has a sound bitmap; otherwise a reason
      expect(v.kept, JSON.stringify(v)).toBe(Boolean(live && !live.inconsistent && live.recording));
      if (!v.kept) expect(v.reason).not.toBe("");
    }

    // Host 1 kept its inactive definition with the checkpoints' metadata: stale now.
    const refused = await a2.chain.forgetCheckpoints({ domainUuid: uuid, names: [] }, ctx());
    expect(refused.removed).toEqual([]);
    expect(refused.refused).toMatch(/running on this host/);
    const f = await a1.chain.forgetCheckpoints({ domainUuid: uuid, names: [] }, ctx());
    expect(f.refused).toBe("");
    expect([...f.removed].sort()).toEqual(records.map((c) => c.name).sort());
    expect((await a1.chain.describeChain({ domainUuid: uuid }, ctx())).checkpoints).toEqual([]);
    const info = (await run("qemu-img", ["info", "-U", "--output=json", vm.disks[1]!.path])).stdout;
    const names = (JSON.parse(info)["format-specific"]?.data?.bitmaps ?? []).map(
      (b: { name: string }) => b.name,
    );
    expect(names).toEqual(expect.arrayContaining(records.map((c) => c.name)));
    expect(stale.name).toBe("host1");
  });

  it("destroy and start on host 2 arrive typed, on host 2 only", async () => {
    const n1 = a1.events.length;
    await vm.virsh(["destroy", vm.name]);
    await sawEvent(a2, "stopped", "destroyed");
    await vm.start();
    await waitFor(
      "started/booted after the destroy",
      async () =>
        a2.events.filter((e) => e.kind === "started" && e.detail === "booted").length >= 1 ? true : undefined,
      { timeoutMs: 20_000 },
    );
    expect(a1.events.slice(n1).filter((e) => e.kind === "stopped" || e.kind === "started")).toEqual([]);
  });
});
