import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FreezeMarkers } from "../../../agent/src/guest/FreezeMarkers.js";
import { recoverFrozenGuests } from "../../../agent/src/guest/recoverFrozenGuests.js";
import { withFrozenGuest } from "../../../agent/src/guest/withFrozenGuest.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { FakeGuestAgent } from "../../support/fakes/FakeGuestAgent.js";

const log = createLogger("test", "silent");

describe("withFrozenGuest: the guest is always thawed", () => {
  let dir: string;
  let markers: FreezeMarkers;
  let agent: FakeGuestAgent;
  const base = () => ({
    domain: "vm1",
    freezeTimeoutMs: 1_000,
    thawTimeoutMs: 1_000,
    maxFrozenMs: 5_000,
    signal: new AbortController().signal,
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cairn-freeze-"));
    markers = new FreezeMarkers(dir);
    agent = new FakeGuestAgent();
    agent.addGuest("vm1");
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("freezes around fn, thaws after, measures the window, leaves no marker", async () => {
    let frozenDuringFn = false;
    const r = await withFrozenGuest(agent, markers, log, base(), async () => {
      frozenDuringFn = agent.guests.get("vm1")!.frozen;
      expect((await markers.list()).map((m) => m.domain)).toEqual(["vm1"]);
      await new Promise((r) => setTimeout(r, 30));
      return 42;
    });
    expect(frozenDuringFn).toBe(true);
    expect(r.value).toBe(42);
    expect(r.watchdogFired).toBe(false);
    expect(r.freezeWindowMs).toBeGreaterThan(0);
    // The phases add up to the window, and the time spent in fn is counted as the hold.
    const { freeze, hold, thaw } = r.phasesMs;
    expect(freeze + hold + thaw).toBeCloseTo(r.freezeWindowMs, 3);
    expect(hold).toBeGreaterThanOrEqual(25);
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
    expect(await markers.list()).toEqual([]);
  });

  it("beforeFreeze runs beside the marker's write and ends before the freeze; if it fails nothing is frozen or left", async () => {
    const seen: string[] = [];
    await withFrozenGuest(
      agent,
      markers,
      log,
      base(),
      async () => {
        seen.push(`fn frozen=${agent.guests.get("vm1")!.frozen}`);
      },
      async () => {
        await new Promise((r) => setTimeout(r, 20));
        seen.push(`before frozen=${agent.guests.get("vm1")!.frozen}`);
      },
    );
    expect(seen).toEqual(["before frozen=false", "fn frozen=true"]);

    agent.calls.length = 0;
    let fnRan = false;
    await expect(
      withFrozenGuest(
        agent,
        markers,
        log,
        base(),
        async () => {
          fnRan = true;
        },
        async () => {
          throw new Error("checkpoint refused");
        },
      ),
    ).rejects.toThrow("checkpoint refused");
    expect(fnRan).toBe(false);
    expect(agent.calls).toEqual([]); // neither a freeze nor a thaw
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
    expect(await markers.list()).toEqual([]);
  });

  it("thaws when fn throws, and rethrows fn's error", async () => {
    await expect(
      withFrozenGuest(agent, markers, log, base(), async () => {
        throw new Error("backup-begin refused");
      }),
    ).rejects.toThrow("backup-begin refused");
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
    expect(await markers.list()).toEqual([]);
  });

  it("thaws even when the caller's signal is aborted mid-way", async () => {
    const ac = new AbortController();
    await expect(
      withFrozenGuest(agent, markers, log, { ...base(), signal: ac.signal }, async () => {
        ac.abort();
        throw new Error("cancelled");
      }),
    ).rejects.toThrow("cancelled");
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
  });

  it("the watchdog thaws a guest whose fn stalls, and says so", async () => {
    let frozenAtEnd = true;
    const r = await withFrozenGuest(agent, markers, log, { ...base(), maxFrozenMs: 50 }, async () => {
      await new Promise((res) => setTimeout(res, 300));
      frozenAtEnd = agent.guests.get("vm1")!.frozen;
    });
    expect(frozenAtEnd).toBe(false); // thawed by the watchdog while fn still ran
    expect(r.watchdogFired).toBe(true);
  });

  it("retries a failing thaw", async () => {
    agent.failThaws = 2;
    await withFrozenGuest(agent, markers, log, base(), async () => undefined);
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
    expect(agent.calls.filter((c) => c.startsWith("thaw"))).toHaveLength(3);
  });

  it("keeps the marker when every thaw fails; startup recovery thaws and clears it", async () => {
    agent.failThaws = 3;
    await expect(withFrozenGuest(agent, markers, log, base(), async () => undefined)).rejects.toThrow(
      /simulated thaw failure/,
    );
    expect(agent.guests.get("vm1")!.frozen).toBe(true);
    expect((await markers.list()).map((m) => m.domain)).toEqual(["vm1"]);
    // "agent restart"
    const thawed = await recoverFrozenGuests(agent, new FreezeMarkers(dir), log, {
      timeoutMs: 1_000,
      signal: new AbortController().signal,
    });
    expect(thawed).toEqual(["vm1"]);
    expect(agent.guests.get("vm1")!.frozen).toBe(false);
    expect(await markers.list()).toEqual([]);
  });

  it("recovery drops markers of domains that no longer exist", async () => {
    await markers.add("gone-vm");
    const thawed = await recoverFrozenGuests(agent, markers, log, {
      timeoutMs: 500,
      signal: new AbortController().signal,
    });
    expect(thawed).toEqual([]);
    expect(await markers.list()).toEqual([]);
  });

  it("a freeze that times out is still followed by a thaw attempt", async () => {
    agent.guests.get("vm1")!.latencyMs = 200;
    await expect(
      withFrozenGuest(
        agent,
        markers,
        log,
        { ...base(), freezeTimeoutMs: 50, thawTimeoutMs: 1_000 },
        async () => 1,
      ),
    ).rejects.toThrow(/did not answer freeze/);
    expect(agent.calls.filter((c) => c.startsWith("thaw")).length).toBeGreaterThanOrEqual(1);
  });
});
