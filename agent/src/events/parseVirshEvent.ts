import type { DomainPowerState } from "../hypervisor/DomainInfo.js";

/** libvirt's lifecycle event kinds (virDomainEventType), as Cairn names them on the wire. */
export type LifecycleKind =
  | "defined"
  | "undefined"
  | "started"
  | "suspended"
  | "resumed"
  | "stopped"
  | "shutdown"
  | "pmsuspended"
  | "crashed";

/** One lifecycle event as `virsh event --all --loop --timestamp` prints it. */
export interface LifecycleEvent {
  domainName: string;
  kind: LifecycleKind;
  /** libvirt's detail in lower case, words joined by "-": "booted", "migrated", "from-snapshot", … */
  detail: string;
  /** From virsh's timestamp; the caller's clock when the line had none. */
  timestampMs: number;
  /**
   * The domain's state right after the event when the event alone says so; undefined for defined
   * and undefined, which happen to running and shut-off domains alike.
   */
  state: DomainPowerState | undefined;
}

// virsh's words (tools/virsh-domain-event.c, libvirt 9.0) → Cairn's kind and the state it leaves.
const KINDS: Record<string, { kind: LifecycleKind; state: DomainPowerState | undefined }> = {
  Defined: { kind: "defined", state: undefined },
  Undefined: { kind: "undefined", state: undefined },
  Started: { kind: "started", state: "running" },
  Suspended: { kind: "suspended", state: "paused" },
  Resumed: { kind: "resumed", state: "running" },
  Stopped: { kind: "stopped", state: "shutoff" },
  Shutdown: { kind: "shutdown", state: "shutdown" },
  PMSuspended: { kind: "pmsuspended", state: "pmsuspended" },
  Crashed: { kind: "crashed", state: "crashed" },
};

// Details whose plain lower-casing would mislead: "Snapshot" means the domain came from (or went
// to) a snapshot, "I/O Error" has a slash.
const DETAILS: Record<string, string> = {
  Snapshot: "from-snapshot",
  "I/O Error": "io-error",
  "API error": "api-error",
};

// "2024-05-01 10:00:00.123+0000: " (virsh --timestamp), then libvirt's own sentence. The domain
// name is greedy: a name may contain "': ", the kind word after the last one decides.
const LINE =
  /^(?:(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-]\d{4})?: )?event 'lifecycle' for domain '(.*)': (Defined|Undefined|Started|Suspended|Resumed|Stopped|Shutdown|PMSuspended|Crashed) (.*)$/;

/**
 * One line of `virsh event --all --loop --timestamp` → a lifecycle event, or undefined for every
 * other line (other event types, "events received: N", blank lines). Pure.
 */
export function parseVirshEvent(line: string, nowMs: number): LifecycleEvent | undefined {
  const m = LINE.exec(line.trimEnd());
  if (!m) return undefined;
  const [, date, time, zone, domainName, word, rawDetail] = m;
  const k = KINDS[word!]!;
  const raw = rawDetail!.trim();
  const detail =
    DETAILS[raw] ??
    raw
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-|-$/g, "");
  return {
    domainName: domainName!,
    kind: k.kind,
    detail,
    timestampMs: date ? timestampOf(date, time!, zone) : nowMs,
    // An incoming migration's QEMU starts paused ("Started Migrated" at the start of the
    // migration, "Resumed Migrated" at its end; seen on libvirt 9.0).
    state: k.kind === "started" && detail === "migrated" ? "paused" : k.state,
  };
}

function timestampOf(date: string, time: string, zone: string | undefined): number {
  const z = zone ? `${zone.slice(0, 3)}:${zone.slice(3)}` : "Z";
  const ms = Date.parse(`${date}T${time}${z}`);
  return Number.isFinite(ms) ? ms : 0;
}
