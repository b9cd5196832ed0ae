import type { Role, TokenRecord } from "../store/records.js";

interface CachedToken {
  name: string;
  role: Role;
  /** null: never expires (the bootstrap token). */
  expiresMs: number | null;
  /** Kept (refused by get()) so that a refusal can name the token in the audit log. */
  revoked: boolean;
}

/**
 * Admin tokens by hash, in memory: the auth check runs on every admin call and must be synchronous.
 * The store stays the source of truth: the coordinator replaces the whole cache after issuing or
 * revoking tokens, so a revoked token is refused at once (kept, marked, to be named in the audit
 * log); an expired one is refused by get().
 */
export class TokenCache {
  private byHash = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Every admin token of `records` (revoked ones marked so); the old cache is dropped. */
  replaceAll(records: readonly TokenRecord[]): void {
    const next = new Map<string, CachedToken>();
    for (const t of records) {
      if (t.kind !== "admin" || !t.role) continue;
      next.set(t.hash, { name: t.name, role: t.role, expiresMs: t.expiresMs, revoked: Boolean(t.revokedMs) });
    }
    this.byHash = next;
  }

  /** A usable token's name and role; undefined for unknown, revoked and expired ones. */
  get(hash: string): { name: string; role: Role } | undefined {
    const t = this.byHash.get(hash);
    if (!t || this.refusal(t)) return undefined;
    return { name: t.name, role: t.role };
  }

  /** Why a known token is refused, with its name (for the audit log); undefined if unknown or usable. */
  refused(hash: string): { name: string; why: "revoked" | "expired" } | undefined {
    const t = this.byHash.get(hash);
    const why = t && this.refusal(t);
    return t && why ? { name: t.name, why } : undefined;
  }

  private refusal(t: CachedToken): "revoked" | "expired" | undefined {
    if (t.revoked) return "revoked";
    if (t.expiresMs !== null && t.expiresMs <= this.now()) return "expired";
    return undefined;
  }
}
