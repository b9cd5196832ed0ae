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
}

export interface DispatchInput {
  queued: readonly QueuedJob[];
  active: readonly ActiveJob[];
  onlineHosts: ReadonlySet<string>;
  nowMs: number;
}

/**
 * Which queued jobs start now, in start order: highest priority, then oldest, then id. A job is
 * skipped while it waits for its retry time, its host is offline, its VM has an active (or already
 * picked) job, or starting it would reach any of its own limits counted over active and picked
 * jobs (per host, per repository, global). Skipped jobs do not block later ones that fit.
 */
export function planDispatch(input: DispatchInput): string[] {
  const perHost = new Map<string, number>();
  const perRepo = new Map<string, number>();
  const busyVms = new Set<string>();
  let total = 0;
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const a of input.active) {
    bump(perHost, a.hostId);
    bump(perRepo, a.repository);
    busyVms.add(a.vmUuid);
    total++;
  }
  const candidates = input.queued
    .filter((q) => q.notBeforeMs <= input.nowMs && input.onlineHosts.has(q.hostId) && !busyVms.has(q.vmUuid))
    .sort(
      (a, b) =>
        b.priority - a.priority || a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  const picked: string[] = [];
  let maxGlobal = 0;
  for (const c of candidates) maxGlobal = Math.max(maxGlobal, c.limits.global);
  for (const q of candidates) {
    // Past the largest global limit nothing else can start.
    if (total >= maxGlobal) break;
    if (total >= q.limits.global) continue;
    if (busyVms.has(q.vmUuid)) continue;
    if ((perHost.get(q.hostId) ?? 0) >= q.limits.perHost) continue;
    if ((perRepo.get(q.repository) ?? 0) >= q.limits.perRepository) continue;
    picked.push(q.id);
    busyVms.add(q.vmUuid);
    bump(perHost, q.hostId);
    bump(perRepo, q.repository);
    total++;
  }
  return picked;
}
