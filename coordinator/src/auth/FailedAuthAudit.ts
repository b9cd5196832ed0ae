/** A call refused before any handler ran (or an enrollment token refused). */
export interface AuthRefusal {
  /** The caller's address as gRPC gives it ("10.0.0.5:51234", "[::1]:51234"); its port is dropped. */
  peer: string;
  /** What was wrong, from a small fixed set: "unknown token", "expired token", "role denied", ... */
  reason: string;
  /** The RPC method refused. */
  method: string;
  /** Who the caller claimed to be, when known: "viewer:grafana", "token:ci-bot", "enrollment:kvm-9". */
  principal?: string;
}

export interface FailedAuthAuditDeps {
  audit(principal: string, action: string, target: string, detail: string): Promise<void>;
  now(): number;
  /** One entry per source, reason and principal per window (default a minute). */
  windowMs?: number;
  /** Open windows kept; beyond it refusals are counted under one "many sources" window. */
  maxWindows?: number;
}

/** A refusal with its source: the caller's address without its port (one client, many connections). */
type Refusal = AuthRefusal & { source: string };

interface Window {
  untilMs: number;
  /** Refusals after the one written, not yet in the log. */
  more: number;
  first: Refusal;
}

const OVERFLOW = "\0overflow";

/**
 * Failed authentications into the audit log without letting a brute force flood it: the first
 * refusal of a source, reason and principal is written at once, the rest of that minute only
 * counted; the count is written when the window is over (the next refusal anywhere, or flush()).
 * Windows open in time order and all last as long, so the expired ones are at the front of the map.
 */
export class FailedAuthAudit {
  private readonly windows = new Map<string, Window>();
  private readonly windowMs: number;
  private readonly maxWindows: number;

  constructor(private readonly deps: FailedAuthAuditDeps) {
    this.windowMs = deps.windowMs ?? 60_000;
    this.maxWindows = deps.maxWindows ?? 10_000;
  }

  async refused(r: AuthRefusal): Promise<void> {
    const now = this.deps.now();
    await this.closeExpired(now);
    let first: Refusal = { ...r, source: sourceOf(r.peer) };
    let key = `${first.source}\0${r.reason}\0${r.principal ?? ""}`;
    if (!this.windows.has(key) && this.windows.size >= this.maxWindows) {
      key = OVERFLOW;
      first = {
        peer: "",
        source: "many sources",
        reason: "refusals beyond the tracked sources",
        method: r.method,
      };
    }
    const open = this.windows.get(key);
    if (open) {
      open.more++;
      return;
    }
    this.windows.set(key, { untilMs: now + this.windowMs, more: 0, first });
    await this.write(first, "");
  }

  /** Writes the counts of every window (coordinator stopping). */
  async flush(): Promise<void> {
    await this.closeExpired(Number.POSITIVE_INFINITY);
  }

  private async closeExpired(now: number): Promise<void> {
    for (const [key, w] of this.windows) {
      if (w.untilMs > now) break;
      this.windows.delete(key);
      if (w.more > 0)
        await this.write(
          w.first,
          `; ${w.more} more refused for the same reason in the ${Math.round(this.windowMs / 1000)} s after ${new Date(w.untilMs - this.windowMs).toISOString()}`,
        );
    }
  }

  private write(r: Refusal, suffix: string): Promise<void> {
    return this.deps.audit(
      r.principal ?? "unauthenticated",
      "AuthFailed",
      r.method,
      `${r.reason} from ${r.source}${suffix}`,
    );
  }
}

/** "10.0.0.5:51234" → "10.0.0.5", "[::1]:51234" → "[::1]". */
function sourceOf(peer: string): string {
  const m = /^(.*):\d+$/.exec(peer);
  return m?.[1] || peer || "unknown";
}
