import type { LedgerEntry, LedgerWrite } from "../store/records.js";
import { assertLedgerMove, type LedgerState } from "./LedgerState.js";

/**
 * Moves of one write batch: each entry written once, with the state it has in the store as the
 * guard, and every step checked against the table of legal moves.
 */
export class LedgerBatch {
  private readonly byKey = new Map<string, LedgerWrite>();

  constructor(private readonly nowMs: number) {}

  stateOf(e: LedgerEntry): LedgerState {
    return this.byKey.get(this.key(e))?.entry.state ?? e.state;
  }

  move(
    e: LedgerEntry,
    from: LedgerState | null,
    to: LedgerState,
    reason: string,
    patch: Partial<LedgerEntry> = {},
  ) {
    const k = this.key(e);
    const prior = this.byKey.get(k);
    const current = prior?.entry ?? e;
    if (prior || from !== null)
      assertLedgerMove(`${e.checkpoint}/${e.target}`, prior ? current.state : (from as LedgerState), to);
    this.byKey.set(k, {
      entry: { ...current, ...patch, state: to, reason, changedMs: this.nowMs },
      from: prior ? prior.from : from,
    });
  }

  writes(): LedgerWrite[] {
    return [...this.byKey.values()];
  }

  private key(e: LedgerEntry): string {
    return `${e.vmUuid}\u0000${e.checkpoint}\u0000${e.target}`;
  }
}
