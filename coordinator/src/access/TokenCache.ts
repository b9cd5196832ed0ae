import type { Role } from "../store/records.js";

/**
 * Admin tokens by hash, in memory: the auth check runs on every admin call and must be synchronous.
 * The store stays the source of truth; the coordinator reloads this after issuing tokens.
 */
export class TokenCache {
  private readonly byHash = new Map<string, { name: string; role: Role }>();

  set(hash: string, who: { name: string; role: Role }): void {
    this.byHash.set(hash, who);
  }

  get(hash: string): { name: string; role: Role } | undefined {
    return this.byHash.get(hash);
  }
}
