import type { Repository } from "../../../shared/src/repository/Repository.js";

interface Entry {
  repository: Promise<Repository>;
  users: number;
  idle: NodeJS.Timeout | undefined;
}

/**
 * Repositories a reader keeps open between jobs, one per location. Opening one starts its chunk
 * workers and its first snapshot loads every pack index; on the network path that happened after
 * the VM host's export was up, so every job waited for it (docs/transfer-paths.md §4; ~0.4 s of a
 * small incremental on the lab). A repository is made for reuse: each snapshot refreshes the pack
 * indexes under its shared lock and starts over when GC removed one (Repository.refreshPackIndexes),
 * so a kept one never deduplicates against a deleted pack. Closed after `idleMs` unused.
 */
export class RepositoryCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly open: (location: string, signal: AbortSignal) => Promise<Repository>,
    private readonly idleMs = 120_000,
  ) {}

  async acquire(location: string, signal: AbortSignal): Promise<{ repository: Repository; release(): void }> {
    let e = this.entries.get(location);
    if (!e) {
      const opened = this.open(location, signal);
      e = { repository: opened, users: 0, idle: undefined };
      this.entries.set(location, e);
      const entry = e;
      // A failed open is not kept: the next job tries again.
      opened.catch(() => {
        if (this.entries.get(location) === entry) this.entries.delete(location);
      });
    }
    const entry = e;
    clearTimeout(entry.idle);
    entry.idle = undefined;
    entry.users++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      entry.users--;
      if (entry.users > 0) return;
      entry.idle = setTimeout(() => void this.drop(location, entry), this.idleMs);
      entry.idle.unref();
    };
    try {
      return { repository: await entry.repository, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Closes every kept repository (the daemon stops). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.entries].map(([location, e]) => this.drop(location, e)));
  }

  private async drop(location: string, e: Entry): Promise<void> {
    if (this.entries.get(location) !== e || e.users > 0) return;
    clearTimeout(e.idle);
    this.entries.delete(location);
    await e.repository.then((r) => r.close()).catch(() => {});
  }
}
