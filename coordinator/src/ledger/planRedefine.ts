import type { LedgerEntry } from "../store/records.js";
import { withParent } from "./withParent.js";

export interface CheckpointToRedefine {
  name: string;
  parent: string;
  bitmaps: Record<string, string>;
  xml: string;
  createdMs: number;
}

export interface RedefinePlan {
  /** Oldest first, each with <parent> set to the chain's current parent. */
  redefine: CheckpointToRedefine[];
  /** Live entries libvirt already has on the host (their bitmaps are checked, not redefined). */
  present: LedgerEntry[];
  /** Live entries that cannot be redefined: no XML was recorded for them. */
  unrecoverable: LedgerEntry[];
}

/**
 * Which of a VM's committed (or suspect) checkpoints must be redefined on the host where it now
 * runs (docs/checkpoint-ledger.md §4). Pure. Checkpoints are taken in the order they were made; the
 * parent of each is the previous one still in the chain, since pruning deleted those in between.
 */
export function planRedefine(entries: readonly LedgerEntry[], onHost: ReadonlySet<string>): RedefinePlan {
  const chain = entries
    .filter((e) => e.state === "committed" || e.state === "suspect")
    .sort((a, b) => a.createdMs - b.createdMs || (a.checkpoint < b.checkpoint ? -1 : 1));
  const byCheckpoint = new Map<string, LedgerEntry[]>();
  for (const e of chain) byCheckpoint.set(e.checkpoint, [...(byCheckpoint.get(e.checkpoint) ?? []), e]);
  const plan: RedefinePlan = { redefine: [], present: [], unrecoverable: [] };
  let parent: string | null = null;
  for (const [name, group] of byCheckpoint) {
    const first = group[0] as LedgerEntry;
    if (onHost.has(name)) plan.present.push(...group);
    else if (!first.xml) plan.unrecoverable.push(...group);
    else
      plan.redefine.push({
        name,
        parent: parent ?? "",
        bitmaps: Object.fromEntries(group.map((e) => [e.target, e.bitmap])),
        xml: withParent(first.xml, parent),
        createdMs: first.createdMs,
      });
    if (onHost.has(name) || first.xml) parent = name;
  }
  return plan;
}
