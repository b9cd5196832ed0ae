import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { LedgerLab } from "../../test/lab/support/LedgerLab.js";
import { Lab } from "../../test/lab/support/lab.js";
import { prepareLab } from "../../test/lab/support/prepareLab.js";
import { eventually } from "../../test/support/coordinatorHarness.js";
import { log } from "../support/simFleet.js";

const MiB = 1024 * 1024;

export interface LabMigrationResult {
  incremental_after_migration: boolean;
  /** Bytes the incremental on the destination read, over the bytes the guest wrote. */
  read_over_dirty_after_migration: number;
  /** From the VM's resume on B (libvirt's event) to the ledger saying its chain is kept there. */
  reconcile_ms: number;
  migrate_ms: number;
  dirty_bytes: number;
  incremental_read_bytes: number;
  /** What a backup after the migration reads without the ledger (Cairn before it, virtnbdbackup): a full. */
  full_read_bytes: number;
  read_vs_full_after_migration: number;
  disk_kinds: Record<string, string>;
}

/**
 * Two lab hosts (the second libvirtd), a real agent daemon on each, a coordinator: one VM with two
 * 512 MiB qcow2 disks is backed up in full on A, live-migrates to B, the guest writes 5% of each
 * disk, and the next backup runs on B. The peer, measured in the same run, is what the same backup
 * reads without the ledger: the full read of the first backup.
 */
export async function labMigration(): Promise<LabMigrationResult> {
  const prepared = await prepareLab();
  const L = new LedgerLab(new Lab(prepared.config));
  try {
    await L.start("bench-ledger", [
      { kind: "blank", format: "qcow2", sizeMiB: 512, randomMiB: 256 },
      { kind: "blank", format: "qcow2", sizeMiB: 512, randomMiB: 256 },
    ]);
    const { c, vm, host2 } = L;
    const run = async (mode: BackupMode) => {
      const job = await L.backup(mode, 600_000);
      if (job.state !== "succeeded") throw new Error(`job ${job.id} ${job.state}: ${job.reason}`);
      return { job, read: await L.bytesRead(job.snapshotId) };
    };
    log("[bench] full backup on kvm-a");
    const full = await run(BackupMode.BACKUP_MODE_FULL);
    log(`[bench] full read ${(full.read / MiB).toFixed(0)} MiB; migrating to kvm-b`);
    const t0 = Date.now();
    await vm.migrate(host2);
    const migrateMs = Date.now() - t0;
    const uuid = (await c.admin().showVmChain({ vm: vm.name, events: 1 })).vm?.uuid ?? "";
    const kept = await eventually(
      "chain kept on kvm-b",
      async () => {
        const r = await c.admin().showVmChain({ vm: vm.name, events: 50 });
        return r.disks.every((d) => d.lastHostId === "kvm-b" && d.next === "incremental") ? r : undefined;
      },
      60_000,
    );
    const resumed = (await c.running.ctx.store.listVmEvents(uuid, 50)).find(
      (e) => e.hostId === "kvm-b" && e.kind === "resumed" && e.detail === "migrated",
    );
    const carried = kept.changes
      .filter((x) => x.reason.startsWith("carried from kvm-a to kvm-b"))
      .map((x) => Number(x.atMs));
    const reconcileMs = resumed ? Math.max(...carried) - resumed.atMs : Number.NaN;
    const dirty = 2 * 26 * MiB; // 5% of each 512 MiB disk
    await vm.writeRandom("/dev/vda", 300 * MiB, 26 * MiB);
    await vm.writeRandom("/dev/vdb", 100 * MiB, 26 * MiB);
    log("[bench] guest wrote 5% of each disk; incremental on kvm-b");
    const incr = await run(BackupMode.BACKUP_MODE_INCREMENTAL);
    const kinds = incr.job.diskKinds;
    return {
      incremental_after_migration:
        incr.job.hostId === "kvm-b" && Object.values(kinds).every((k) => k === "incremental"),
      read_over_dirty_after_migration: Math.round((incr.read / dirty) * 1000) / 1000,
      reconcile_ms: Math.round(reconcileMs),
      migrate_ms: migrateMs,
      dirty_bytes: dirty,
      incremental_read_bytes: incr.read,
      full_read_bytes: full.read,
      read_vs_full_after_migration: Math.round((incr.read / full.read) * 1000) / 1000,
      disk_kinds: kinds,
    };
  } finally {
    await L.dispose();
  }
}
