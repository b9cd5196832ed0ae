import { describe, expect, it } from "vitest";
import { parseVirshEvent } from "../../../agent/src/events/parseVirshEvent.js";

// Lines as `virsh event --all --loop --timestamp` printed them on libvirt 9.0 in the lab
// (boot, suspend/resume, a migration seen from both hosts, a guest panic, undefine).
const NOW = 1_000;
const at = "2026-12-07 18:58:01.227+0000";
const ms = Date.parse("2026-12-07T18:58:01.227Z");

describe("parseVirshEvent", () => {
  it.each([
    ["Started Booted", "started", "booted", "running"],
    ["Resumed Unpaused", "resumed", "unpaused", "running"],
    ["Suspended Paused", "suspended", "paused", "paused"],
    ["Suspended Migrated", "suspended", "migrated", "paused"],
    ["Stopped Migrated", "stopped", "migrated", "shutoff"],
    ["Stopped Destroyed", "stopped", "destroyed", "shutoff"],
    ["Stopped Crashed", "stopped", "crashed", "shutoff"],
    ["Stopped Failed", "stopped", "failed", "shutoff"],
    ["Stopped Shutdown", "stopped", "shutdown", "shutoff"],
    ["Started Migrated", "started", "migrated", "paused"], // incoming QEMU waits paused
    ["Resumed Migrated", "resumed", "migrated", "running"],
    ["Started Restored", "started", "restored", "running"],
    ["Started Snapshot", "started", "from-snapshot", "running"],
    ["Shutdown Finished after guest request", "shutdown", "finished-after-guest-request", "shutdown"],
    ["Crashed Panicked", "crashed", "panicked", "crashed"],
    ["PMSuspended Memory", "pmsuspended", "memory", "pmsuspended"],
    ["Suspended I/O Error", "suspended", "io-error", "paused"],
    ["Defined Added", "defined", "added", undefined],
    ["Defined Updated", "defined", "updated", undefined],
    ["Undefined Removed", "undefined", "removed", undefined],
  ])("%s → %s/%s", (text, kind, detail, state) => {
    const e = parseVirshEvent(`${at}: event 'lifecycle' for domain 'web-1': ${text}`, NOW);
    expect(e).toEqual({ domainName: "web-1", kind, detail, timestampMs: ms, state });
  });

  it("reads virsh's timestamp with its zone, and takes the caller's clock without one", () => {
    expect(
      parseVirshEvent("2026-12-07 20:58:01.227+0200: event 'lifecycle' for domain 'a': Started Booted", NOW)
        ?.timestampMs,
    ).toBe(ms);
    expect(parseVirshEvent("event 'lifecycle' for domain 'a': Started Booted", NOW)?.timestampMs).toBe(NOW);
  });

  it("keeps a domain name that contains quotes and the separator", () => {
    const e = parseVirshEvent(`${at}: event 'lifecycle' for domain 'odd': 'name': Stopped Destroyed`, NOW);
    expect(e?.domainName).toBe("odd': 'name");
    expect(e?.kind).toBe("stopped");
  });

  it("ignores every other line", () => {
    for (const line of [
      `${at}: event 'agent-lifecycle' for domain 'a': state: 'connected' reason: 'channel event'`,
      `${at}: event 'migration-iteration' for domain 'a': iteration: '2'`,
      `${at}: event 'job-completed' for domain 'a':`,
      "\toperation: 5",
      "events received: 12",
      "",
      `${at}: event 'lifecycle' for domain 'a': Exploded Loudly`,
    ])
      expect(parseVirshEvent(line, NOW), line).toBeUndefined();
  });
});
