import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackupConfig, BackupDeps } from "../../../../../agent/src/backup/BackupRequest.js";
import type { DiskImages } from "../../../../../agent/src/backup/pipeline/export/DiskImages.js";
import type { ExportServer } from "../../../../../agent/src/backup/pipeline/export/ExportServer.js";
import { localExportServer } from "../../../../../agent/src/backup/pipeline/export/localExportServer.js";
import { FreezeMarkers } from "../../../../../agent/src/guest/FreezeMarkers.js";
import type { DomainInfo } from "../../../../../agent/src/hypervisor/DomainInfo.js";
import { createLogger } from "../../../../../shared/src/log/createLogger.js";
import type { BlockDevice } from "../../../../../shared/src/nbd/BlockDevice.js";
import { NBD_STATE_DIRTY } from "../../../../../shared/src/nbd/constants.js";
import type { Extent } from "../../../../../shared/src/nbd/extents/Extent.js";
import { mergeExtents } from "../../../../../shared/src/nbd/extents/mergeExtents.js";
import { MemoryBlockDevice } from "../../../../../shared/src/nbd/MemoryBlockDevice.js";
import { NbdServer, type NbdServerTls } from "../../../../../shared/src/nbd/NbdServer.js";
import { MemoryObjectStore } from "../../../../../shared/src/repository/backends/MemoryObjectStore.js";
import { Repository } from "../../../../../shared/src/repository/Repository.js";
import { FakeGuestAgent } from "../../../../support/fakes/FakeGuestAgent.js";
import { FakeHypervisor } from "../../../../support/fakes/FakeHypervisor.js";

export const BLOCK = 64 * 1024;
export const DISK_SIZE = 16 * BLOCK;

/**
 * A disk image in memory with persistent dirty bitmaps: each bitmap holds the blocks written since
 * it was made (as QEMU's do), so an export of bitmap B shows exactly what changed since B.
 */
export class FakeDisk {
  readonly dev = new MemoryBlockDevice(DISK_SIZE, false, BLOCK);
  readonly bitmaps = new Map<string, Set<number>>();
  /** Reads from its exports fail while set (a dying export). */
  failReads = false;

  constructor(readonly format: "qcow2" | "raw") {}

  async write(offset: number, data: Buffer): Promise<void> {
    await this.dev.write(offset, data);
    for (let b = Math.floor(offset / BLOCK); b * BLOCK < offset + data.length; b++)
      for (const s of this.bitmaps.values()) s.add(b);
  }

  async content(): Promise<Buffer> {
    return this.dev.read(0, DISK_SIZE);
  }

  /** A read-only point-in-time copy serving `exportBitmap` as the blocks of bitmap `from`. */
  async snapshot(exportBitmap?: { name: string; blocks: ReadonlySet<number> }): Promise<BlockDevice> {
    const copy = new MemoryBlockDevice(DISK_SIZE, false, BLOCK);
    for (const e of await this.dev.blockStatus(0, DISK_SIZE))
      if (!(e.flags & 1)) await copy.write(e.offset, await this.dev.read(e.offset, e.length));
    const blocks = new Set(exportBitmap?.blocks ?? []);
    return {
      size: DISK_SIZE,
      readOnly: true,
      read: async (o, l) => {
        if (this.failReads) throw new Error("fake: export read failed");
        return copy.read(o, l);
      },
      blockStatus: (o, l) => copy.blockStatus(o, l),
      dirtyBitmaps: exportBitmap ? [exportBitmap.name] : [],
      dirtyStatus: async (_name, offset, length) => {
        const out: Extent[] = [];
        for (let at = offset; at < offset + length; ) {
          const b = Math.floor(at / BLOCK);
          const end = Math.min((b + 1) * BLOCK, offset + length);
          out.push({ offset: at, length: end - at, flags: blocks.has(b) ? NBD_STATE_DIRTY : 0 });
          at = end;
        }
        return mergeExtents(out);
      },
    };
  }
}

/** Disks by source path. */
export type Disks = Map<string, FakeDisk>;

/**
 * FakeHypervisor whose pull backups really serve the point-in-time view (NbdServer over the unix
 * socket the backup XML names), and whose checkpoints start bitmaps in the fake disks.
 */
export class ServingHypervisor extends FakeHypervisor {
  private readonly servers = new Map<string, NbdServer>();
  readonly calls: string[] = [];
  /** Called at the start of beginPullBackup (to abort a job right there). */
  onBegin: (() => void) | undefined;
  /** Serve pull backups on TCP with TLS on loopback instead of the XML's unix socket. */
  tcpTls: NbdServerTls | undefined;
  /** The port of the last TCP export. */
  lastPort = 0;

  constructor(
    domains: DomainInfo[],
    private readonly disks: Disks,
  ) {
    super(domains);
  }

  private async track(domain: string, signal: AbortSignal) {
    const info = (await this.domain(domain, signal))!;
    for (const c of await this.listCheckpoints(domain, signal)) {
      for (const [target, bitmap] of Object.entries(c.bitmaps)) {
        const disk = this.disks.get(info.disks.find((d) => d.target === target)?.source ?? "");
        if (disk && !disk.bitmaps.has(bitmap)) disk.bitmaps.set(bitmap, new Set());
      }
    }
  }

  override async createCheckpoint(domain: string, xml: string, signal: AbortSignal) {
    this.calls.push("createCheckpoint");
    await super.createCheckpoint(domain, xml, signal);
    await this.track(domain, signal);
  }

  override async deleteCheckpoint(
    domain: string,
    name: string,
    opts: { metadataOnly: boolean },
    signal: AbortSignal,
  ) {
    this.calls.push(`deleteCheckpoint ${name}`);
    const cp = await this.checkpoint(domain, name, signal);
    await super.deleteCheckpoint(domain, name, opts, signal);
    const info = (await this.domain(domain, signal))!;
    if (cp && !opts.metadataOnly)
      for (const [t, b] of Object.entries(cp.bitmaps))
        this.disks.get(info.disks.find((d) => d.target === t)?.source ?? "")?.bitmaps.delete(b);
  }

  override async beginPullBackup(
    domain: string,
    docs: { backupXml: string; checkpointXml?: string; reuseScratch?: boolean; jobChecked?: boolean },
    signal: AbortSignal,
  ) {
    this.calls.push(docs.checkpointXml ? "beginPullBackup+checkpoint" : "beginPullBackup");
    this.onBegin?.();
    const info = (await this.domain(domain, signal))!;
    const checkpoints = await this.listCheckpoints(domain, signal);
    await super.beginPullBackup(domain, docs, signal);
    const job = (await this.backupJob(domain, signal))!;
    const exports: Record<string, BlockDevice> = {};
    for (const d of job.disks) {
      const disk = this.disks.get(info.disks.find((x) => x.target === d.target)?.source ?? "")!;
      const from = d.incremental
        ? checkpoints.find((c) => c.name === d.incremental)?.bitmaps[d.target]
        : undefined;
      exports[d.exportName] = await disk.snapshot(
        d.exportBitmap && from
          ? { name: d.exportBitmap, blocks: disk.bitmaps.get(from) ?? new Set() }
          : undefined,
      );
    }
    await this.track(domain, signal);
    const server = new NbdServer({ exports, ...(this.tcpTls ? { tls: this.tcpTls } : {}) });
    if (this.tcpTls) {
      const t = await server.listen({ host: "127.0.0.1", port: 0 });
      this.lastPort = "port" in t ? t.port : 0;
    } else await server.listen({ path: job.socket! });
    this.servers.set(info.name, server);
  }

  override async endBackup(domain: string, signal: AbortSignal) {
    this.calls.push("endBackup");
    await super.endBackup(domain, signal);
    const info = await this.domain(domain, signal);
    await this.servers.get(info?.name ?? "")?.close();
    this.servers.delete(info?.name ?? "");
  }

  /** Exports still served (none once every job ended). */
  get serving(): number {
    return this.servers.size;
  }
}

/** qemu-img over the fake disks. */
export function fakeImages(disks: Disks): DiskImages {
  const disk = (p: string) => {
    const d = disks.get(p);
    if (!d) throw new Error(`fake: no image ${p}`);
    return d;
  };
  return {
    virtualSize: async () => DISK_SIZE,
    createQcow2: async () => {},
    info: async (p) => ({
      format: disk(p).format,
      virtualSize: DISK_SIZE,
      bitmaps: [...disk(p).bitmaps.keys()].map((name) => ({ name, flags: [] })),
    }),
    bitmap: async (p, name, ops) => {
      const d = disk(p);
      if (ops[0] === "--remove") {
        if (!d.bitmaps.delete(name)) throw new Error(`fake: no bitmap ${name}`);
        return;
      }
      const merged = new Set<number>();
      for (let i = 1; i < ops.length; i += 2) for (const b of d.bitmaps.get(ops[i + 1]!) ?? []) merged.add(b);
      d.bitmaps.set(name, merged);
    },
  };
}

/**
 * Exports like the local server (live: libvirt's unix socket), with qemu-nbd replaced by an
 * NbdServer serving the fake disk on the socket the pipeline chose.
 */
export function fakeExportServer(
  disks: Disks,
  maxBytesPerSecond = 0,
): ExportServer & { running: Set<string> } {
  const running = new Set<string>();
  return {
    maxBytesPerSecond,
    running,
    live: localExportServer.live,
    async qemuNbd(o) {
      const disk = disks.get(o.image)!;
      const dev = await disk.snapshot(
        o.bitmap ? { name: o.bitmap, blocks: disk.bitmaps.get(o.bitmap) ?? new Set() } : undefined,
      );
      const server = new NbdServer({ exports: { [o.exportName]: dev } });
      await server.listen({ path: o.socketPath });
      running.add(o.socketPath);
      return {
        pid: undefined,
        endpoint: { kind: "unix", path: o.socketPath },
        stop: async () => {
          await server.close();
          running.delete(o.socketPath);
        },
      };
    },
  };
}

export interface Rig {
  deps: BackupDeps;
  config: BackupConfig;
  hypervisor: ServingHypervisor;
  disks: Disks;
  server: ReturnType<typeof fakeExportServer>;
  repository: Repository;
  workDir: string;
  dispose(): Promise<void>;
}

/** One VM (vda qcow2, vdb raw) on a serving fake hypervisor, an in-memory repository, a work dir. */
export async function rig(
  state: "running" | "shutoff",
  opts: { maxExportBytesPerSecond?: number; oneDisk?: boolean } = {},
): Promise<Rig> {
  const workDir = await mkdtemp(join(tmpdir(), "cairn-pipeline-"));
  const disks: Disks = new Map([
    ["/images/vm-1-a.qcow2", new FakeDisk("qcow2")],
    ["/images/vm-1-b.raw", new FakeDisk("raw")],
  ]);
  const domain: DomainInfo = {
    uuid: "6f1c2b8e-3d47-4a51-9d0e-0000000000aa",
    name: "vm-1",
    state,
    persistent: true,
    disks: [
      { target: "vda", format: "qcow2", source: "/images/vm-1-a.qcow2", device: "disk" },
      ...(opts.oneDisk
        ? []
        : [{ target: "vdb", format: "raw", source: "/images/vm-1-b.raw", device: "disk" as const }]),
    ],
    labels: {},
    hasGuestAgentChannel: true,
  };
  const hypervisor = new ServingHypervisor([domain], disks);
  const guestAgent = new FakeGuestAgent();
  guestAgent.addGuest("vm-1");
  const server = fakeExportServer(disks, opts.maxExportBytesPerSecond);
  const repository = await Repository.init(new MemoryObjectStore(), {
    chunkSize: BLOCK,
    workers: 2,
    scryptN: 1024,
  });
  const log = createLogger("test", "silent");
  return {
    deps: {
      hypervisor,
      guestAgent,
      freezeMarkers: new FreezeMarkers(join(workDir, "frozen")),
      repository,
      log,
      exportServer: server,
      images: fakeImages(disks),
    },
    config: {
      workDir,
      qemuUid: process.getuid?.() ?? 0,
      qemuGid: process.getgid?.() ?? 0,
      freezeTimeoutMs: 5_000,
      thawTimeoutMs: 5_000,
      maxFrozenMs: 10_000,
      guestPingTimeoutMs: 1_000,
      hookTimeoutMs: 5_000,
      nbdRequestSize: 64 * 1024,
      nbdDepth: 4,
      vmConfigFiles: { nvramDir: join(workDir, "nvram"), swtpmStateDir: join(workDir, "swtpm") },
    },
    hypervisor,
    disks,
    server,
    repository,
    workDir,
    dispose: async () => {
      await repository.close();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

/** Writes `fill` into block `block` of the disk at `source`. */
export async function writeBlock(r: Rig, source: string, block: number, fill: number): Promise<void> {
  await r.disks.get(source)!.write(block * BLOCK, Buffer.alloc(BLOCK, fill));
}

/** A restored disk's bytes. */
export async function restored(repo: Repository, snapshotId: string, target: string): Promise<Buffer> {
  const d = await repo.openDisk(snapshotId, target);
  return d.read(0, DISK_SIZE);
}
