import type { Role, TokenRecord } from "../store/records.js";

interface CachedToken {
  name: string;
  role: Role;
  /** null: never expires (the bootstrap token). */
  expiresMs: number | null;
}

/**
 * Admin tokens by hash, in memory: the auth check runs on every admin call and must be synchronous.
 * The store stays the source of truth: the coordinator replaces the whole cache after issuing or
 * revoking tokens, so a revoked token is gone from it at once; an expired one is refused by get().
 */
export class TokenCache {
  private byHash = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Every usable admin token of `records` (revoked ones left out); the old cache is dropped. */
  replaceAll(records: readonly TokenRecord[]): void {
    const next = new Map<string, CachedToken>();
    for (const t of records) {
      if (t.kind !== "admin" || !t.role || t.revokedMs) continue;
      next.set(t.hash, { name: t.name, role: t.role, expiresMs: t.expiresMs });
    }
    this.byHash = next;
  }

  get(hash: string): { name: string; role: Role } | undefined {
    const t = this.byHash.get(hash);
    if (!t || (t.expiresMs !== null && t.expiresMs <= this.now())) return undefined;
    return { name: t.name, role: t.role };
  }
}
