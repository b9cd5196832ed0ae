import { describe, expect, it } from "vitest";
import { EventSink } from "../../../../coordinator/src/fleet/EventSink.js";
import type { VmUpdate } from "../../../../coordinator/src/store/records.js";
import type { Store } from "../../../../coordinator/src/store/Store.js";
import { SqliteStore } from "../../../../coordinator/src/store/sqlite/SqliteStore.js";

const upd = (i: number, state = "running"): VmUpdate => ({
  uuid: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
  name: `vm-${i}`,
  hostId: "h1",
  state,
  present: true,
});

/** Counts the store transactions the sink makes. */
function counting(store: Store): { store: Store; calls: number[] } {
  const calls: number[] = [];
  const wrapped = Object.create(store) as Store;
  wrapped.applyVmUpdates = async (u, now) => {
    calls.push(u.length);
    return store.applyVmUpdates(u, now);
  };
  return { store: wrapped, calls };
}

describe("EventSink", () => {
  it("commits concurrent pushes from many streams in one transaction, each resolving when durable", async () => {
    const real = SqliteStore.open(":memory:");
    const { store, calls } = counting(real);
    const sink = new EventSink(store, () => 1000, { delayMs: 5, maxBatch: 10_000 });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => sink.push([upd(i), upd(i + 100)])),
    );
    expect(results).toEqual(Array(50).fill(2));
    expect(calls).toEqual([100]);
    expect((await real.listVms()).length).toBe(100);
    await real.close();
  });

  it("flushes at once when a batch reaches maxBatch, and later updates of a VM win", async () => {
    const real = SqliteStore.open(":memory:");
    const { store, calls } = counting(real);
    const sink = new EventSink(store, () => 1000, { delayMs: 60_000, maxBatch: 3 });
    const t0 = Date.now();
    await sink.push([upd(1, "running"), upd(2), upd(1, "shutoff")]);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(calls).toEqual([3]);
    expect((await real.getVm("vm-1"))?.state).toBe("shutoff");
    await real.close();
  });

  it("rejects every waiter of a failed batch, and the next batch still commits", async () => {
    const real = SqliteStore.open(":memory:");
    let fail = true;
    const store = Object.create(real) as Store;
    store.applyVmUpdates = async (u, now) => {
      if (fail) throw new Error("disk I/O error");
      return real.applyVmUpdates(u, now);
    };
    const sink = new EventSink(store, () => 1000, { delayMs: 1, maxBatch: 100 });
    const a = sink.push([upd(1)]);
    const b = sink.push([upd(2)]);
    await expect(a).rejects.toThrow("disk I/O error");
    await expect(b).rejects.toThrow("disk I/O error");
    fail = false;
    await expect(sink.push([upd(3)])).resolves.toBe(1);
    expect((await real.listVms()).map((v) => v.name)).toEqual(["vm-3"]);
    await real.close();
  });

  it("drain() commits what is pending without waiting for the timer", async () => {
    const real = SqliteStore.open(":memory:");
    const sink = new EventSink(real, () => 1000, { delayMs: 60_000, maxBatch: 100 });
    const p = sink.push([upd(7)]);
    await sink.drain();
    await expect(p).resolves.toBe(1);
    expect((await real.getVm("vm-7"))?.hostId).toBe("h1");
    await real.close();
  });
});
