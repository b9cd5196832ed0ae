import { Cron } from "croner";

export interface Schedule {
  cron: string;
  timezone: string;
}

const crons = new Map<string, Cron>();

function cronFor(s: Schedule): Cron {
  const key = `${s.cron}\0${s.timezone}`;
  let c = crons.get(key);
  if (!c) {
    c = new Cron(s.cron, { timezone: s.timezone, paused: true });
    crons.set(key, c);
  }
  return c;
}

/** The first fire strictly after `after`, or undefined when the schedule never fires again. */
export function nextFireAfter(s: Schedule, after: Date): Date | undefined {
  return cronFor(s).nextRun(after) ?? undefined;
}
