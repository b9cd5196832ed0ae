/** Minutes since local midnight in a time zone. */
function localMinutes(now: Date, timezone: string): number {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: timezone,
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(now);
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value ?? 0);
  return get("hour") * 60 + get("minute");
}

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether `now` is inside a daily backup window (wrapping midnight when end <= start). No window: always. */
export function inWindow(
  window: { start: string; end: string } | undefined,
  timezone: string,
  now: Date,
): boolean {
  if (!window) return true;
  const t = localMinutes(now, timezone);
  const s = minutes(window.start);
  const e = minutes(window.end);
  return e > s ? t >= s && t < e : t >= s || t < e;
}
