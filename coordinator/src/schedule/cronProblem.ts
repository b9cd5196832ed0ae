import { Cron, CronPattern } from "croner";

const DAY = 86_400;
/** Fires are looked for from here on: a leap year's start, so the 4 years walked hold a Feb 29. */
const FROM_MS = Date.UTC(2024, 0, 1);
const YEARS_WALKED = 4;

const hms = (t: number) =>
  [Math.floor(t / 3600), Math.floor(t / 60) % 60, t % 60].map((n) => String(n).padStart(2, "0")).join(":");

/**
 * Why a (syntactically valid) cron expression may not be a schedule, or undefined: it never fires
 * (`0 0 30 2 *`), or two consecutive fires are less than `minIntervalSeconds` apart. Measured in
 * the expression's own wall-clock time (a DST change is not counted). The times of day are the same
 * on every day it fires, so their closest pair comes from the expression's fields directly; only
 * when its first and last fire of a day are close across midnight are the days walked (at most 4
 * years) for two consecutive ones. Pure, and a few milliseconds at worst.
 */
export function cronProblem(pattern: string, minIntervalSeconds: number): string | undefined {
  try {
    return problem(pattern, minIntervalSeconds);
  } catch (e) {
    // croner overflows its stack on some dates no month has (`0 0 31 4,6,9,11 *`): the scheduler
    // could not compute its fires either.
    return `never fires (its next fire cannot be computed: ${(e as Error).message})`;
  }
}

function problem(pattern: string, minIntervalSeconds: number): string | undefined {
  // A fixed UTC offset: the fields mean the same in every zone, and croner is 40× faster without Intl.
  const cron = new Cron(pattern, { paused: true, utcOffset: 0 });
  const first = cron.nextRun(new Date(FROM_MS));
  if (!first) return "never fires (no date matches its day and month fields)";
  if (minIntervalSeconds <= 1) return undefined; // one second is a cron's finest step
  const tooOften = (gap: number, between: string) =>
    `fires ${gap} s apart (${between}), more often than the coordinator's minimum of ${minIntervalSeconds} s (policies.minCronIntervalSeconds)`;

  const p = new CronPattern(pattern);
  let firstT = -1;
  let prevT = -1;
  for (let h = 0; h < 24; h++) {
    if (!p.hour[h]) continue;
    for (let m = 0; m < 60; m++) {
      if (!p.minute[m]) continue;
      for (let s = 0; s < 60; s++) {
        if (!p.second[s]) continue;
        const t = h * 3600 + m * 60 + s;
        if (prevT >= 0 && t - prevT < minIntervalSeconds)
          return tooOften(t - prevT, `at ${hms(prevT)} and ${hms(t)}`);
        if (firstT < 0) firstT = t;
        prevT = t;
      }
    }
  }
  const acrossMidnight = DAY - (prevT - firstT);
  if (acrossMidnight >= minIntervalSeconds) return undefined;
  // Close across midnight: too often only if it fires on two consecutive days.
  const end = FROM_MS + YEARS_WALKED * 366 * DAY * 1000;
  let day = Math.floor(first.getTime() / (DAY * 1000));
  for (;;) {
    const next = cron.nextRun(new Date((day * DAY + prevT) * 1000));
    if (!next || next.getTime() > end) return undefined;
    const nextDay = Math.floor(next.getTime() / (DAY * 1000));
    if (nextDay === day + 1)
      return tooOften(acrossMidnight, `at ${hms(prevT)} and ${hms(firstT)} the next day`);
    day = nextDay;
  }
}
