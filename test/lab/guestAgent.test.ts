import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FreezeMarkers } from "../../agent/src/guest/FreezeMarkers.js";
import { recoverFrozenGuests } from "../../agent/src/guest/recoverFrozenGuests.js";
import { VirshGuestAgent } from "../../agent/src/guest/VirshGuestAgent.js";
import { withFrozenGuest } from "../../agent/src/guest/withFrozenGuest.js";
import { VirshSessionPool } from "../../agent/src/hypervisor/VirshSessionPool.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { guestAgentContract } from "../support/guestAgentContract.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";

const lab = new Lab();
const agent = new VirshGuestAgent({ uri: "qemu:///system" });
const log = createLogger("test", "silent");
let live: LabVm;
let silent: LabVm;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cairn-ga-"));
  live = await lab.createVm({ label: "ga", disks: [{ kind: "ext4-data" }] });
  silent = await lab.createVm({ label: "nga", disks: [{ kind: "ext4-data" }], guestAgent: false });
  await Promise.all([live.boot(), silent.start()]);
});
afterAll(async () => {
  await lab.dispose();
  await rm(dir, { recursive: true, force: true });
});

guestAgentContract("VirshGuestAgent with the lab's real qemu-ga", () => ({
  agent,
  live: live.name,
  silent: silent.name,
}));

const pool = new VirshSessionPool("qemu:///system");
afterAll(() => pool.close());
guestAgentContract("VirshGuestAgent through a pool of virsh sessions", () => ({
  agent: new VirshGuestAgent({ uri: "qemu:///system", runner: pool.run }),
  live: live.name,
  silent: silent.name,
}));

describe("guaranteed thaw against a real guest", () => {
  it("freeze window of freeze → (nothing) → thaw, and the guest is thawed after", async () => {
    const markers = new FreezeMarkers(join(dir, "m1"));
    const windows: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await withFrozenGuest(
        agent,
        markers,
        log,
        {
          domain: live.name,
          freezeTimeoutMs: 10_000,
          thawTimeoutMs: 10_000,
          maxFrozenMs: 30_000,
          signal: new AbortController().signal,
        },
        async () => live.fsfreezeStatus(),
      );
      expect(r.value).toBe("frozen");
      windows.push(r.freezeWindowMs);
    }
    windows.sort((a, b) => a - b);
    console.log(
      `[lab] freeze+thaw window via virsh, median ${windows[2]?.toFixed(0)} ms (${windows.map((w) => w.toFixed(0)).join(", ")})`,
    );
    expect(await live.fsfreezeStatus()).toBe("thawed");
  });

  it("a guest left frozen by a dead agent is thawed by startup recovery", async () => {
    const markers = new FreezeMarkers(join(dir, "m2"));
    await markers.add(live.name);
    await live.fsfreeze(); // the "previous agent" froze it and died
    expect(await live.fsfreezeStatus()).toBe("frozen");
    const thawed = await recoverFrozenGuests(agent, markers, log, {
      timeoutMs: 10_000,
      signal: new AbortController().signal,
    });
    expect(thawed).toEqual([live.name]);
    expect(await live.fsfreezeStatus()).toBe("thawed");
    expect(await markers.list()).toEqual([]);
  });
});
