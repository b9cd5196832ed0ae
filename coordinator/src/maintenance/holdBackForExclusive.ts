import type { JobKind } from "../store/records.js";

/** Maintenance that takes the repository's exclusive lock (format §8). */
const EXCLUSIVE: ReadonlySet<JobKind> = new Set(["prune", "gc"]);
/** Jobs that read or write the repository under a shared lock, many at once. */
const SHARED: ReadonlySet<JobKind> = new Set(["backup", "restore-disk", "restore-vm"]);

/**
 * Writer preference for a repository's exclusive lock: while a prune or GC runs on a repository
 * (or waits on its agent for the backups' shared locks to go), no new backup or restore of that
 * repository starts, so a steady stream of them cannot starve it. Returns the queued jobs that may
 * start.
 */
export function holdBackForExclusive<J extends { kind: JobKind; repository: string }>(
  queued: readonly J[],
  active: readonly { kind: JobKind; repository: string }[],
): J[] {
  const held = new Set(active.filter((j) => EXCLUSIVE.has(j.kind)).map((j) => j.repository));
  return queued.filter((j) => !SHARED.has(j.kind) || !held.has(j.repository));
}
