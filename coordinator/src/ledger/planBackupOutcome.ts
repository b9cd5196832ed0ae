import type { LedgerEntry, LedgerWrite } from "../store/records.js";
import { LedgerBatch } from "./LedgerBatch.js";
import { isLive } from "./LedgerState.js";

export interface BackupOutcome {
  vmUuid: string;
  jobId: string;
  hostId: string;
  repository: string;
  snapshotId: string;
  /** The checkpoint the backup made (absent for a copy). */
  checkpoint?: { name: string; parent: string; bitmaps: Record<string, string>; xml: string };
  /** Per disk, as the agent reports it: "incremental", "full: <reason>", ... */
  diskKinds: Record<string, string>;
  prunedCheckpoints: readonly string[];
}

/** Reasons of a full read that start a new chain on purpose, not because the old one broke. */
const NEW_CHAIN = [/^full backup requested/, /^no earlier backup/, /^disk added/];

/**
 * The ledger writes a sealed backup implies (docs/checkpoint-ledger.md §2). Pure: the new
 * checkpoint is committed; checkpoints the agent pruned are retired; per disk read, a full read ends
 * the older chain (retired when a new chain was asked for, broken with the agent's reason when the
 * chain could not be continued) and an incremental read confirms suspect entries.
 */
export function planBackupOutcome(
  entries: readonly LedgerEntry[],
  o: BackupOutcome,
  nowMs: number,
): LedgerWrite[] {
  const batch = new LedgerBatch(nowMs);
  const key = (cp: string, t: string) => `${cp}\u0000${t}`;
  const stored = new Map(entries.map((e) => [key(e.checkpoint, e.target), e]));
  const cp = o.checkpoint;
  if (cp) {
    for (const [target, bitmap] of Object.entries(cp.bitmaps)) {
      const old = stored.get(key(cp.name, target));
      const entry: LedgerEntry = {
        vmUuid: o.vmUuid,
        checkpoint: cp.name,
        target,
        parent: cp.parent || null,
        bitmap,
        xml: cp.xml,
        hostId: o.hostId,
        snapshotId: o.snapshotId,
        jobId: o.jobId,
        repository: o.repository,
        kind: kindOf(o.diskKinds[target]).kind,
        state: old?.state ?? "committed",
        reason: "",
        createdMs: old?.createdMs ?? nowMs,
        changedMs: nowMs,
      };
      batch.move(
        entry,
        old ? old.state : null,
        "committed",
        `sealed in snapshot ${o.snapshotId} by job ${o.jobId}`,
      );
    }
  }
  for (const [target, raw] of Object.entries(o.diskKinds)) {
    const { kind, reason } = kindOf(raw);
    const older = entries.filter(
      (e) =>
        e.target === target && e.checkpoint !== cp?.name && isLive(batch.stateOf(e)) && e.state !== "pending",
    );
    if (kind === "full") {
      const fresh = NEW_CHAIN.some((r) => r.test(reason));
      for (const e of older)
        if (fresh)
          batch.move(e, e.state, "retired", `a new chain began with the full backup of job ${o.jobId}`);
        else batch.move(e, e.state, "broken", `job ${o.jobId} read ${target} in full: ${reason}`);
    } else if (kind === "incremental" || kind === "differential") {
      for (const e of older)
        if (batch.stateOf(e) === "suspect")
          batch.move(
            e,
            e.state,
            "committed",
            `confirmed by job ${o.jobId}: the bitmap survived (${kind} read)`,
          );
    }
  }
  // A checkpoint an earlier, interrupted run of the same job began (the agent removed it).
  for (const e of entries)
    if (e.state === "pending" && e.jobId === o.jobId && e.checkpoint !== cp?.name)
      batch.move(
        e,
        e.state,
        "retired",
        `rolled back: an earlier run of job ${o.jobId} made it and did not seal`,
      );
  // After the per-disk outcome: a chain a full read ended keeps that reason, not "pruned".
  const pruned = new Set(o.prunedCheckpoints);
  for (const e of entries) {
    if (pruned.has(e.checkpoint) && isLive(batch.stateOf(e)))
      batch.move(e, e.state, "retired", `deleted after job ${o.jobId} (its bitmap merged into its parent)`);
  }
  return batch.writes();
}

/** "full: why" → { kind: "full", reason: "why" }. */
export function kindOf(raw: string | undefined): { kind: string; reason: string } {
  if (!raw) return { kind: "", reason: "" };
  const i = raw.indexOf(":");
  return i < 0
    ? { kind: raw.trim(), reason: "" }
    : { kind: raw.slice(0, i).trim(), reason: raw.slice(i + 1).trim() };
}
