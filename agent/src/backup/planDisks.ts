import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type { BackupKind } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { LiveBitmap } from "../hypervisor/Hypervisor.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import type { HistoryEntry } from "./pipeline/history/HistoryEntry.js";

export interface DiskToBackUp {
  target: string;
  /** "qcow2" can carry persistent dirty bitmaps; anything else is read in full every time. */
  format: string;
}

export interface DiskPlan {
  target: string;
  kind: BackupKind;
  /** Checkpoint whose dirty bitmap drives an incremental/differential read. */
  incrementalFrom: string | null;
  /** Restore point the unread chunks come from. */
  parentSnapshot: string | null;
  /** Why this disk is read in full (null when it is not, or for copy). */
  fullReason: string | null;
  /** Whether the new checkpoint tracks this disk with a bitmap. */
  bitmap: boolean;
}

export interface BackupPlan {
  /** Checkpoint created with this backup; null for copy (which never touches checkpoints). */
  newCheckpoint: string | null;
  disks: DiskPlan[];
}

export interface PlanInput {
  mode: BackupMode;
  disks: DiskToBackUp[];
  /** The domain's checkpoints as libvirt reports them (parents first). */
  checkpoints: CheckpointInfo[];
  /** This VM's sealed snapshots in the target repository, oldest first. */
  history: readonly HistoryEntry[];
  /**
   * The bitmaps the running QEMU really has, per disk (Hypervisor.liveBitmaps). A checkpoint whose
   * bitmap is missing or inconsistent cannot drive an incremental. Undefined: not checked.
   */
  liveBitmaps: ReadonlyMap<string, readonly LiveBitmap[]> | undefined;
  /** Name for the new checkpoint (unique, safe). */
  checkpointName: string;
  /** Disks the coordinator's ledger has no valid chain for (docs/checkpoint-ledger.md): full, with its reason. */
  fullReasons?: Readonly<Record<string, string>> | undefined;
}

/**
 * Decides, per disk, how this backup reads it. Pure. A disk goes full (with the reason recorded)
 * when it has no usable chain: raw format, the coordinator's ledger says its chain ended, never
 * backed up, its checkpoint gone from the domain or missing its bitmap, or its bitmap inconsistent. The other disks stay incremental.
 */
export function planDisks(input: PlanInput): BackupPlan {
  const { mode } = input;
  const byName = new Map(input.checkpoints.map((c) => [c.name, c]));
  const latest = input.history.at(-1);
  const byId = new Map(input.history.map((s) => [s.id, s]));

  const disks = input.disks.map((d): DiskPlan => {
    const qcow2 = d.format === "qcow2";
    const full = (fullReason: string): DiskPlan => ({
      target: d.target,
      kind: mode === "copy" ? "copy" : "full",
      incrementalFrom: null,
      parentSnapshot: null,
      fullReason,
      bitmap: qcow2 && mode !== "copy",
    });
    if (mode === "copy") return { ...full("copy backup: read in full, no checkpoint"), fullReason: null };
    if (!qcow2) return full(`${d.format || "unknown"}-format disk: no persistent dirty bitmap, read in full`);
    if (mode === "full") return full("full backup requested");
    const ledger = input.fullReasons?.[d.target];
    if (ledger) return full(ledger);
    if (!latest) return full("no earlier backup of this VM in the repository");

    // The restore point this disk's read is relative to, and the checkpoint it was taken at.
    let base: HistoryEntry | undefined = latest;
    if (mode === "differential") base = chainRoot(latest, d.target, byId);
    const entry = base?.disks.find((e) => e.target === d.target);
    if (!base || !entry) return full("disk added since the last backup");
    if (!entry.checkpoint) return full(`the last backup of ${d.target} (${base.id}) kept no checkpoint`);
    const cp = byName.get(entry.checkpoint);
    if (!cp) return full(`checkpoint ${entry.checkpoint} of the last backup is gone from the domain`);
    if (!(d.target in cp.bitmaps))
      return full(`checkpoint ${entry.checkpoint} has no bitmap for ${d.target}`);
    const broken = brokenBitmap(input, entry.checkpoint, d.target);
    if (broken) return full(broken);
    return {
      target: d.target,
      kind: mode === "differential" ? "differential" : "incremental",
      incrementalFrom: entry.checkpoint,
      parentSnapshot: base.id,
      fullReason: null,
      bitmap: true,
    };
  });
  return { newCheckpoint: mode === "copy" ? null : input.checkpointName, disks };
}

/**
 * An incremental from `from` merges the bitmaps of `from` and of every later checkpoint: each must
 * be in QEMU and consistent. Returns why not, or undefined when the chain is usable. Pure.
 */
export function brokenBitmap(
  input: Pick<PlanInput, "checkpoints" | "liveBitmaps">,
  from: string,
  target: string,
): string | undefined {
  if (!input.liveBitmaps) return undefined;
  const start = input.checkpoints.findIndex((c) => c.name === from);
  if (start < 0) return undefined;
  const live = input.liveBitmaps.get(target) ?? [];
  for (const c of input.checkpoints.slice(start)) {
    const name = c.bitmaps[target];
    if (name === undefined) continue;
    const b = live.find((x) => x.name === name);
    if (!b)
      return `dirty bitmap ${name} of ${target} is missing (QEMU stopped before saving it): changes since ${from} are unknown`;
    if (b.inconsistent)
      return `dirty bitmap ${name} of ${target} is inconsistent (QEMU stopped uncleanly): changes since ${from} are unknown`;
  }
  return undefined;
}

/** The full backup that started the chain `latest` belongs to, for one disk. */
export function chainRoot<T extends HistoryEntry>(
  latest: T,
  target: string,
  byId: ReadonlyMap<string, T>,
): T | undefined {
  let s: T | undefined = latest;
  for (let guard = 0; s && guard < 10_000; guard++) {
    const e: HistoryEntry["disks"][number] | undefined = s.disks.find((x) => x.target === target);
    if (!e) return undefined;
    if (e.kind === "full") return s;
    s = e.parentSnapshot ? byId.get(e.parentSnapshot) : undefined;
  }
  return undefined;
}

/**
 * Checkpoints to delete after a successful backup: Cairn's own checkpoints other than the chain's
 * root (differentials need it) and the newest (the next incremental needs it). Deleting merges a
 * checkpoint's bitmap into its parent, so nothing the kept ones cover is lost. Pure.
 */
export function checkpointsToPrune(
  checkpoints: readonly CheckpointInfo[],
  keep: readonly string[],
  prefix = "cairn-",
): string[] {
  const keepSet = new Set(keep);
  return checkpoints.filter((c) => c.name.startsWith(prefix) && !keepSet.has(c.name)).map((c) => c.name);
}
