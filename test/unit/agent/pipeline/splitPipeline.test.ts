import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BackupJobStateMachine } from "../../../../agent/src/backup/BackupJobState.js";
import type { BackupRequest } from "../../../../agent/src/backup/BackupRequest.js";
import { exportReadyWire } from "../../../../agent/src/backup/pipeline/descriptor/exportReadyWire.js";
import type { ExportServer } from "../../../../agent/src/backup/pipeline/export/ExportServer.js";
import { exportBackup } from "../../../../agent/src/backup/pipeline/export/exportBackup.js";
import { historyEntryWire } from "../../../../agent/src/backup/pipeline/history/historyEntryWire.js";
import { readAndSeal } from "../../../../agent/src/backup/pipeline/read/readAndSeal.js";
import { runBackup } from "../../../../agent/src/backup/runBackup.js";
import { pullBackupXml } from "../../../../agent/src/hypervisor/backupXml.js";
import { ExportReady } from "../../../../shared/src/gen/cairn/v1/agent.js";
import { NbdServer } from "../../../../shared/src/nbd/NbdServer.js";
import { TokenBucket } from "../../../../shared/src/repository/decorators/TokenBucket.js";
import type { SnapshotManifest } from "../../../../shared/src/repository/manifest/SnapshotManifest.js";
import { Repository } from "../../../../shared/src/repository/Repository.js";
import { makeTestPki, type TestPki } from "../../../integration/nbd/support/tlsCerts.js";
import { BLOCK, type Rig, restored, rig, writeBlock } from "./support/pipelineFakes.js";

const A = "/images/vm-1-a.qcow2";
const UUID = "6f1c2b8e-3d47-4a51-9d0e-0000000000aa";
let pki: TestPki;
let pkiDir: string;
const rigs: Rig[] = [];
let n = 0;

beforeAll(async () => {
  pkiDir = await mkdtemp(join(tmpdir(), "cairn-pipeline-pki-"));
  pki = await makeTestPki(pkiDir);
});
afterAll(async () => rm(pkiDir, { recursive: true, force: true }));
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.dispose();
});

async function newRig(state: "running" | "shutoff", opts: Parameters<typeof rig>[1] = {}) {
  const r = await rig(state, { oneDisk: true, ...opts });
  rigs.push(r);
  return r;
}

const request = (mode: BackupRequest["mode"], signal = AbortSignal.timeout(30_000)): BackupRequest => ({
  jobId: `job-${++n}`,
  domain: "vm-1",
  mode,
  quiesce: "preferred",
  labels: { policy: "nightly" },
  signal,
});

/**
 * The VM host's network export, as the real one serves it but on loopback with the test PKI: TCP
 * with TLS that requires the reader's client certificate (the fake libvirt serves pull backups there).
 */
function networkServer(r: Rig): ExportServer {
  const tls = { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca };
  r.hypervisor.tcpTls = tls;
  const endpoint = (port: number) => ({
    kind: "tcp" as const,
    host: "127.0.0.1",
    port,
    // Only the certificate travels; the reader adds its own key (exportReadyWire.fromWire).
    tls: {
      caPem: pki.ca.toString(),
      certPem: pki.clientCert.toString(),
      keyPem: "",
      serverName: "localhost",
    },
  });
  return {
    maxBytesPerSecond: 0,
    live: async ({ jobDir }) => ({
      backupXml: (disks) => pullBackupXml({ socketPath: join(jobDir, "nbd", "backup.sock"), disks }),
      endpoint: () => endpoint(r.hypervisor.lastPort),
      holdForBegin: async () => async () => {},
      close: async () => {},
    }),
    async qemuNbd(o) {
      const disk = r.disks.get(o.image)!;
      const dev = await disk.snapshot(
        o.bitmap ? { name: o.bitmap, blocks: disk.bitmaps.get(o.bitmap) ?? new Set() } : undefined,
      );
      const server = new NbdServer({ exports: { [o.exportName]: dev }, tls });
      const t = await server.listen({ host: "127.0.0.1", port: 0 });
      r.server.running.add(o.socketPath);
      return {
        pid: undefined,
        endpoint: endpoint("port" in t ? t.port : 0),
        stop: async () => {
          await server.close();
          r.server.running.delete(o.socketPath);
        },
      };
    },
  };
}

/**
 * One backup split across two "agents": the VM host plans from the catalog's history (never the
 * repository), exports and describes; the descriptor crosses as a proto ExportReady; the reader
 * opens the repository itself, reads over TLS and seals; the manifest crosses back as JSON.
 */
async function splitBackup(r: Rig, req: BackupRequest, opts: { readerFails?: boolean } = {}) {
  const { repository: _notOnTheVmHost, ...vmHostDeps } = r.deps;
  const catalog = (await r.repository.listVmSnapshots(UUID)).map((m) =>
    historyEntryWire.fromWire(historyEntryWire.toWire(m)),
  );
  const domain = (await r.hypervisor.domain("vm-1", req.signal))!;
  const session = await exportBackup(vmHostDeps, r.config, req, domain, {
    server: networkServer(r),
    images: vmHostDeps.images!,
    history: Promise.resolve(catalog),
    states: new BackupJobStateMachine(req.jobId, r.deps.log),
  });
  const wire = ExportReady.decode(ExportReady.encode(exportReadyWire.toWire(session.descriptor)).finish());
  const descriptor = exportReadyWire.fromWire(wire, { keyPem: pki.clientKey.toString() });
  const reader = await Repository.open(r.repository.store, { workers: 1 });
  try {
    if (opts.readerFails) r.disks.get(A)!.failReads = true;
    const sealed = await readAndSeal(reader, descriptor, {
      jobId: req.jobId,
      labels: req.labels,
      requestSize: r.config.nbdRequestSize,
      depth: r.config.nbdDepth,
      signal: req.signal,
      log: r.deps.log,
    }).catch((e: unknown) => e as Error);
    if (sealed instanceof Error) {
      await session.finish({ failed: sealed.message });
      return { error: sealed, plan: session.plan };
    }
    const manifest = JSON.parse(JSON.stringify(sealed.manifest)) as SnapshotManifest;
    const { prunedCheckpoints } = await session.finish({ sealed: manifest });
    return { manifest, plan: session.plan, prunedCheckpoints, descriptor: session.descriptor };
  } finally {
    r.disks.get(A)!.failReads = false;
    await reader.close();
  }
}

/** What must be equal between a split and a local run of the same backup. */
const shape = (m: SnapshotManifest) => ({
  vm: m.vm,
  disks: m.disks.map((d) => ({
    target: d.target,
    kind: d.kind,
    sourceFormat: d.sourceFormat,
    checkpoint: d.checkpoint !== null,
    parent: d.parentSnapshot !== null,
    fullReason: d.fullReason,
    bytesRead: d.stats.bytesRead,
  })),
  consistency: m.consistency.kind,
  labels: m.labels,
  extraKeys: Object.keys(m.extra).sort(),
  mode: m.extra["mode"],
  offline: m.extra["offline"],
});

describe.each(["running", "shutoff"] as const)("split pipeline, %s domain", (state) => {
  it("export on one agent, read and seal on another: the same snapshots as a local run", async () => {
    const local = await newRig(state);
    const split = await newRig(state);
    for (const r of [local, split]) {
      await writeBlock(r, A, 0, 0x61);
      await writeBlock(r, A, 7, 0x62);
    }
    const l1 = await runBackup(local.deps, local.config, request("auto"));
    const s1 = await splitBackup(split, request("auto"));
    expect(s1.manifest).toBeDefined();
    expect(s1.descriptor!.disks[0]!.endpoint.kind).toBe("tcp");
    expect(shape(s1.manifest!)).toEqual(shape(l1.manifest));
    expect(s1.manifest!.jobId).toBe(`job-${n}`);

    for (const r of [local, split]) {
      await writeBlock(r, A, 7, 0x71);
      await writeBlock(r, A, 12, 0x72);
    }
    const l2 = await runBackup(local.deps, local.config, request("auto"));
    const s2 = await splitBackup(split, request("auto"));
    expect(shape(s2.manifest!)).toEqual(shape(l2.manifest));
    expect(s2.manifest!.disks[0]).toMatchObject({ kind: "incremental", parentSnapshot: s1.manifest!.id });
    for (const [r, m] of [
      [local, l2.manifest],
      [split, s2.manifest!],
    ] as const) {
      expect((await restored(r.repository, m.id, "vda")).equals(await r.disks.get(A)!.content())).toBe(true);
    }
    // finish({sealed}) kept the checkpoint, as the local run did.
    const cps = async (r: Rig) =>
      (await r.hypervisor.listCheckpoints("vm-1", AbortSignal.timeout(5_000))).length;
    expect(await cps(split)).toBe(await cps(local));
    expect(
      (await split.hypervisor.listCheckpoints("vm-1", AbortSignal.timeout(5_000))).map((c) => c.name),
    ).toContain(s2.plan.newCheckpoint);
    expect(split.hypervisor.serving + split.server.running.size).toBe(0);
  });

  it("the reader fails: finish({failed}) ends the export and rolls the checkpoint and bitmaps back", async () => {
    const r = await newRig(state);
    await writeBlock(r, A, 3, 0x81);
    const s1 = await splitBackup(r, request("full"));
    const before = (await r.hypervisor.listCheckpoints("vm-1", AbortSignal.timeout(5_000))).map(
      (c) => c.name,
    );
    const bitmaps = [...r.disks.get(A)!.bitmaps.keys()];
    await writeBlock(r, A, 4, 0x82);
    const failed = await splitBackup(r, request("incremental"), { readerFails: true });
    expect(failed.error).toBeInstanceOf(Error);
    expect(failed.plan.newCheckpoint).not.toBeNull();
    expect(
      (await r.hypervisor.listCheckpoints("vm-1", AbortSignal.timeout(5_000))).map((c) => c.name),
    ).toEqual(before);
    expect([...r.disks.get(A)!.bitmaps.keys()]).toEqual(bitmaps);
    expect(r.hypervisor.serving + r.server.running.size).toBe(0);
    expect(await r.hypervisor.backupJob("vm-1", AbortSignal.timeout(5_000))).toBeUndefined();
    expect((await r.repository.listVmSnapshots(UUID)).map((m) => m.id)).toEqual([s1.manifest!.id]);
  });
});

describe("throttling (§7)", () => {
  const timed = async (r: Rig, extra: Partial<BackupRequest> = {}) => {
    const t0 = performance.now();
    const res = await runBackup(r.deps, r.config, { ...request("full"), quiesce: "off", ...extra });
    return { ms: performance.now() - t0, bytesRead: res.bytesRead };
  };
  const fill = async (r: Rig) => {
    for (let b = 0; b < 8; b++) await writeBlock(r, A, b, 0x90 + b);
  };
  const LIMIT = 4 * BLOCK; // 256 KiB/s; 512 KiB to read: at least one second past the bucket's first

  it("the job's limit, the export's cap and the agent's shared limit each slow the reads down", async () => {
    const free = await newRig("running");
    await fill(free);
    const unlimited = await timed(free);
    expect(unlimited.bytesRead).toBe(8 * BLOCK);

    const job = await newRig("running");
    await fill(job);
    const byJob = await timed(job, { bandwidthBytesPerSecond: LIMIT });

    const cap = await newRig("shutoff", { maxExportBytesPerSecond: LIMIT });
    await fill(cap);
    const byCap = await timed(cap);

    const agent = await newRig("running");
    agent.deps.readLimiter = new TokenBucket(LIMIT);
    await fill(agent);
    const byAgent = await timed(agent);

    for (const t of [byJob, byCap, byAgent]) {
      expect(t.bytesRead).toBe(8 * BLOCK);
      expect(t.ms).toBeGreaterThanOrEqual(950);
      expect(t.ms).toBeGreaterThan(unlimited.ms);
    }
  });
});
