export interface JobLimits {
  perHost: number;
  perRepository: number;
  global: number;
}

export interface QueuedJob {
  id: string;
  vmUuid: string;
  hostId: string;
  repository: string;
  policy: string;
  priority: number;
  createdAtMs: number;
  notBeforeMs: number;
  limits: JobLimits;
}

export interface ActiveJob {
  id: string;
  vmUuid: string;
  hostId: string;
  repository: string;
  policy: string;
  /** A network-path job's reader: it counts against that host's limit as a VM host does. */
  readerHostId?: string | undefined;
}

/** A job's reader, or undefined when the job cannot start now (no path yet, or none at all). */
export type AssignReader = (
  q: QueuedJob,
  perHost: ReadonlyMap<string, number>,
) => { readerHostId?: string | undefined } | undefined;

export interface DispatchInput {
  queued: readonly QueuedJob[];
  active: readonly ActiveJob[];
  onlineHosts: ReadonlySet<string>;
  nowMs: number;
  /**
   * Chooses where a job's data goes once its own host has room, given every host's jobs (as VM
   * host or reader) including those picked earlier in this plan (docs/transfer-paths.md §3).
   */
  assign?: AssignReader;
}

export interface DispatchPick {
  id: string;
  readerHostId?: string | undefined;
}

/**
 * Which queued jobs start now, in start order: highest priority, then oldest, then id. A job is
 * skipped while it waits for its retry time, its host is offline, its VM has an active (or already
 * picked) job, or starting it would reach any of its own limits counted over active and picked
 * jobs (per host, per repository, global). A job's reader on another host counts against that
 * host's limit too. Skipped jobs do not block later ones that fit.
 */
export function planDispatch(input: DispatchInput): string[] {
  return planDispatchWithReaders(input).map((p) => p.id);
}

/** planDispatch, with each picked job's reader (when `assign` chose one). */
export function planDispatchWithReaders(input: DispatchInput): DispatchPick[] {
  const perHost = new Map<string, number>();
  const perRepo = new Map<string, number>();
  const busyVms = new Set<string>();
  let total = 0;
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const a of input.active) {
    bump(perHost, a.hostId);
    bump(perRepo, a.repository);
    if (a.readerHostId && a.readerHostId !== a.hostId) bump(perHost, a.readerHostId);
    busyVms.add(a.vmUuid);
    total++;
  }
  const candidates = input.queued
    .filter((q) => q.notBeforeMs <= input.nowMs && input.onlineHosts.has(q.hostId) && !busyVms.has(q.vmUuid))
    .sort(
      (a, b) =>
        b.priority - a.priority || a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  const picked: DispatchPick[] = [];
  let maxGlobal = 0;
  for (const c of candidates) maxGlobal = Math.max(maxGlobal, c.limits.global);
  for (const q of candidates) {
    // Past the largest global limit nothing else can start.
    if (total >= maxGlobal) break;
    if (total >= q.limits.global) continue;
    if (busyVms.has(q.vmUuid)) continue;
    if ((perHost.get(q.hostId) ?? 0) >= q.limits.perHost) continue;
    if ((perRepo.get(q.repository) ?? 0) >= q.limits.perRepository) continue;
    const assigned = input.assign ? input.assign(q, perHost) : {};
    if (!assigned) continue;
    const reader = assigned.readerHostId;
    const remote = reader && reader !== q.hostId ? reader : undefined;
    if (remote && (perHost.get(remote) ?? 0) >= q.limits.perHost) continue;
    picked.push(reader ? { id: q.id, readerHostId: reader } : { id: q.id });
    busyVms.add(q.vmUuid);
    bump(perHost, q.hostId);
    if (remote) bump(perHost, remote);
    bump(perRepo, q.repository);
    total++;
  }
  return picked;
}
