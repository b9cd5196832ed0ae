/** What retention needs to know about a snapshot. */
export interface RetentionCandidate {
  id: string;
  time: Date;
  protected?: boolean;
}

/** Counts per rule; omitted or 0 = rule off. With no rule at all, everything is kept. */
export interface RetentionPolicy {
  keepLast?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export type RetentionReason =
  | "protected"
  | "last"
  | "hourly"
  | "daily"
  | "weekly"
  | "monthly"
  | "yearly"
  | "no policy";

export interface RetentionDecision {
  /** Kept snapshot ids with every rule that keeps them. */
  keep: Map<string, RetentionReason[]>;
  /** Ids to remove, newest first. */
  remove: string[];
}

type Bucketed = Exclude<RetentionReason, "protected" | "last" | "no policy">;

/** The period a time falls in for a rule (UTC). ISO weeks start on Monday. */
function period(rule: Bucketed, t: Date): string {
  const y = t.getUTCFullYear();
  const m = t.getUTCMonth();
  const d = t.getUTCDate();
  switch (rule) {
    case "yearly":
      return `${y}`;
    case "monthly":
      return `${y}-${m}`;
    case "daily":
      return `${y}-${m}-${d}`;
    case "hourly":
      return `${y}-${m}-${d}-${t.getUTCHours()}`;
    case "weekly": {
      // Monday of the week, as a day number: stable across year boundaries.
      const day = Math.floor(t.getTime() / 86_400_000);
      const dow = (t.getUTCDay() + 6) % 7;
      return `${day - dow}`;
    }
  }
}

/**
 * Chooses which snapshots to keep (restic semantics). Snapshots are ordered newest first (ties by
 * id). keepLast keeps the n newest. Each period rule walks newest first and keeps the first
 * snapshot of every new period until it has kept n periods. Protected snapshots are always kept.
 * Pure: no clock, no I/O.
 */
export function selectForRetention(
  snapshots: readonly RetentionCandidate[],
  policy: RetentionPolicy,
): RetentionDecision {
  const sorted = [...snapshots].sort(
    (a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
  );
  const keep = new Map<string, RetentionReason[]>();
  const add = (id: string, r: RetentionReason) => {
    const l = keep.get(id);
    if (l) l.push(r);
    else keep.set(id, [r]);
  };
  const rules: Array<[Bucketed, number]> = (
    [
      ["hourly", policy.hourly ?? 0],
      ["daily", policy.daily ?? 0],
      ["weekly", policy.weekly ?? 0],
      ["monthly", policy.monthly ?? 0],
      ["yearly", policy.yearly ?? 0],
    ] as Array<[Bucketed, number]>
  ).filter(([, n]) => n > 0);
  const keepLast = policy.keepLast ?? 0;
  const anyRule = keepLast > 0 || rules.length > 0;

  for (const s of sorted) if (s.protected) add(s.id, "protected");
  if (!anyRule) {
    for (const s of sorted) add(s.id, "no policy");
    return { keep, remove: [] };
  }
  for (const s of sorted.slice(0, keepLast)) add(s.id, "last");
  for (const [rule, n] of rules) {
    const seen = new Set<string>();
    for (const s of sorted) {
      if (seen.size >= n) break;
      const p = period(rule, s.time);
      if (seen.has(p)) continue;
      seen.add(p);
      add(s.id, rule);
    }
  }
  return { keep, remove: sorted.filter((s) => !keep.has(s.id)).map((s) => s.id) };
}
