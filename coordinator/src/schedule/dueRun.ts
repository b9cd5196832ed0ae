import { nextFireAfter, type Schedule } from "./nextFireAfter.js";

/**
 * The fire time to run now, if any: the newest fire in (max(lastHandledFire, createdAt), now].
 * Fires missed while the coordinator was down collapse into this one run. Finds the newest fire
 * by searching back from `now` with doubling steps, so a year of missed per-second fires costs a
 * few dozen cron evaluations, not millions.
 */
export function dueRun(
  schedule: Schedule,
  lastHandledFire: Date | undefined,
  createdAt: Date,
  now: Date,
): Date | undefined {
  const since = lastHandledFire && lastHandledFire > createdAt ? lastHandledFire : createdAt;
  const first = nextFireAfter(schedule, since);
  if (!first || first > now) return undefined;
  const nowMs = now.getTime();
  let step = 1000;
  let from = nowMs - step;
  // Widen until (from, now] contains a fire; `first` bounds the search.
  while (from > first.getTime()) {
    const f = nextFireAfter(schedule, new Date(from));
    if (f && f.getTime() <= nowMs) break;
    step *= 2;
    from = nowMs - step;
  }
  let cur = nextFireAfter(schedule, new Date(Math.max(from, since.getTime()))) as Date;
  for (;;) {
    const n = nextFireAfter(schedule, cur);
    if (!n || n.getTime() > nowMs) return cur;
    cur = n;
  }
}
