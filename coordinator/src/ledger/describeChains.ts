import type { LedgerChange, LedgerEntry, VmRecord } from "../store/records.js";
import { isLive } from "./LedgerState.js";

export interface DiskChainView {
  target: string;
  /** What the next backup does with the disk. */
  next: "incremental" | "full" | "check";
  summary: string;
  /** Backups in the chain since (and including) its full. */
  length: number;
  lastCheckpoint: string;
  lastHostId: string;
  reason: string;
  sinceMs: number;
}

const at = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);

/**
 * Per disk, the chain in plain words (`cairn vms chain`). Pure. The head is the newest live entry
 * (docs/checkpoint-ledger.md §2); without one the disk is read in full, for the reason of the change
 * that ended its chain.
 */
export function describeChains(
  vm: Pick<VmRecord, "disks">,
  entries: readonly LedgerEntry[],
  changes: readonly LedgerChange[] = [],
): DiskChainView[] {
  const targets = [...new Set([...vm.disks.map((d) => d.target), ...entries.map((e) => e.target)])].sort();
  return targets.map((target): DiskChainView => {
    const format = vm.disks.find((d) => d.target === target)?.format;
    const mine = entries.filter((e) => e.target === target).sort((a, b) => a.createdMs - b.createdMs);
    const live = mine.filter((e) => isLive(e.state));
    const committed = live.filter((e) => e.state !== "pending");
    const head = committed.at(-1);
    const pending = live.find((e) => e.state === "pending");
    const running = pending ? `; job ${pending.jobId} is making checkpoint ${pending.checkpoint}` : "";
    if (format && format !== "qcow2")
      return full(target, `${format}-format disk: no persistent dirty bitmap, read in full every time`, 0);
    if (!head) {
      const ended = mine
        .filter((e) => !isLive(e.state))
        .sort((a, b) => a.changedMs - b.changedMs)
        .at(-1);
      if (!ended) return full(target, `no checkpoint recorded for ${target} yet${running}`, 0);
      return full(target, `${ended.reason} (at ${at(ended.changedMs)})${running}`, ended.changedMs, ended);
    }
    const length = chainLength(mine.filter((e) => e.state !== "pending"));
    const base = {
      target,
      length,
      lastCheckpoint: head.checkpoint,
      lastHostId: head.hostId,
      sinceMs: head.changedMs,
    };
    if (head.state === "suspect")
      return {
        ...base,
        next: "check",
        reason: head.reason,
        summary: `${target}: chain of ${length} is suspect since ${at(head.changedMs)}: ${head.reason}; the next backup checks its bitmap (incremental if it survived, full otherwise)${running}`,
      };
    const moved = changes.find(
      (c) =>
        c.checkpoint === head.checkpoint &&
        c.target === target &&
        c.to === "committed" &&
        c.from === "committed",
    );
    return {
      ...base,
      next: "incremental",
      reason: "",
      summary: `${target}: incremental chain of ${length}, last checkpoint ${head.checkpoint} on ${head.hostId}${
        moved ? ` (${moved.reason})` : ""
      }${running}`,
    };
  });
}

/** Backups from the newest back to the full that began its chain (retired pruned ones count). */
function chainLength(newestLast: readonly LedgerEntry[]): number {
  let n = 0;
  for (let i = newestLast.length - 1; i >= 0; i--) {
    const e = newestLast[i] as LedgerEntry;
    if (e.state === "broken") break;
    n++;
    if (e.kind === "full") break;
  }
  return n;
}

function full(target: string, reason: string, sinceMs: number, last?: LedgerEntry): DiskChainView {
  return {
    target,
    next: "full",
    summary: `${target}: will be read in full: ${reason}`,
    length: 0,
    lastCheckpoint: last?.checkpoint ?? "",
    lastHostId: last?.hostId ?? "",
    reason,
    sinceMs,
  };
}
