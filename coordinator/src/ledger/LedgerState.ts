import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { LedgerState } from "../store/records.js";

export type { LedgerState };

/** The legal moves of a ledger entry (docs/checkpoint-ledger.md §2). A move to the same state
 * rewrites the entry (another host, the XML once sealed) and is legal for live states. */
const LEGAL: Record<LedgerState, readonly LedgerState[]> = {
  pending: ["pending", "committed", "retired"],
  committed: ["committed", "suspect", "broken", "retired"],
  suspect: ["suspect", "committed", "broken", "retired"],
  broken: ["retired"],
  retired: [],
};

/** States whose entries still make up a chain the next backup can continue. */
export const LIVE_STATES: readonly LedgerState[] = ["pending", "committed", "suspect"];

export function isLive(s: LedgerState): boolean {
  return s === "pending" || s === "committed" || s === "suspect";
}

/** Throws on an illegal move: a bug or a race, never something to paper over. */
export function assertLedgerMove(what: string, from: LedgerState, to: LedgerState): void {
  if (!LEGAL[from].includes(to))
    throw new CairnError("failed-precondition", `ledger entry ${what}: illegal move ${from} → ${to}`);
}
