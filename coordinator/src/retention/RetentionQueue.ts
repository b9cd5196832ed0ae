import type { Logger } from "../../../shared/src/log/createLogger.js";
import { pruneSnapshots } from "../../../shared/src/repository/gc/pruneSnapshots.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import type { Policy } from "../policy/Policy.js";
import type { Store } from "../store/Store.js";

interface Pending {
  repository: string;
  vmUuid: string;
  policy: Policy;
}

/**
 * Retention after backups: each successful policy job queues a prune of that VM's snapshots in
 * that repository. A prune takes the repository's exclusive lock, so it runs only while no job of
 * this coordinator writes to the repository, one at a time.
 */
export class RetentionQueue {
  private readonly pending = new Map<string, Pending>();
  private busy = false;

  constructor(
    private readonly deps: {
      store: Store;
      log: Logger;
      openRepository: (location: string, signal: AbortSignal) => Promise<Repository>;
      audit: (action: string, target: string, detail: string) => Promise<void>;
    },
  ) {}

  add(p: Pending): void {
    this.pending.set(`${p.repository}\0${p.vmUuid}`, p);
  }

  size(): number {
    return this.pending.size;
  }

  /** Runs at most one pending prune whose repository has no active job; resolves when it is done. */
  async runOne(activeRepositories: ReadonlySet<string>, signal: AbortSignal): Promise<boolean> {
    if (this.busy) return false;
    const next = [...this.pending.entries()].find(([, p]) => !activeRepositories.has(p.repository));
    if (!next) return false;
    const [key, p] = next;
    this.pending.delete(key);
    this.busy = true;
    try {
      const repoRec = await this.deps.store.getRepository(p.repository);
      if (!repoRec) return false;
      const repo = await this.deps.openRepository(repoRec.location, signal);
      try {
        const decision = await pruneSnapshots(repo, p.policy.retention, {
          vmUuid: p.vmUuid,
          signal,
          lock: { waitMs: 30_000 },
        });
        await this.deps.store.deleteSnapshots(decision.remove);
        if (decision.remove.length) {
          this.deps.log.info(
            { vm: p.vmUuid, policy: p.policy.name, removed: decision.remove },
            "retention pruned",
          );
          await this.deps.audit(
            "Retention",
            `${p.repository}/${p.vmUuid}`,
            `policy ${p.policy.name} removed ${decision.remove.join(" ")}`,
          );
        }
      } finally {
        await repo.close();
      }
      return true;
    } catch (err) {
      this.deps.log.warn(
        { err, vm: p.vmUuid, repository: p.repository },
        "retention prune failed; retried after the next backup",
      );
      return false;
    } finally {
      this.busy = false;
    }
  }
}
