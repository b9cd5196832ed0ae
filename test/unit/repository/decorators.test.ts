import { describe, expect, it } from "vitest";
import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { BandwidthLimitedObjectStore } from "../../../shared/src/repository/decorators/BandwidthLimitedObjectStore.js";
import { ConcurrencyLimitedObjectStore } from "../../../shared/src/repository/decorators/ConcurrencyLimitedObjectStore.js";
import { RetryingObjectStore } from "../../../shared/src/repository/decorators/RetryingObjectStore.js";
import type { ObjectStore } from "../../../shared/src/repository/ports/ObjectStore.js";
import { objectStoreContract } from "../../support/objectStoreContract.js";

/** A store whose next `failures` puts fail with the given error code. */
class FlakyStore extends MemoryObjectStore {
  calls = 0;
  constructor(
    private failures: number,
    private readonly code: "unavailable" | "permission-denied",
  ) {
    super();
  }
  override async put(key: string, data: Uint8Array): Promise<void> {
    this.calls++;
    if (this.failures-- > 0) throw new CairnError(this.code, `put ${key} failed`);
    return super.put(key, data);
  }
}

objectStoreContract(
  "Retrying(Concurrency(Bandwidth(Memory)))",
  async () =>
    new RetryingObjectStore(
      new ConcurrencyLimitedObjectStore(new BandwidthLimitedObjectStore(new MemoryObjectStore(), 1e9), 4),
      {
        baseDelayMs: 1,
      },
    ),
);

describe("RetryingObjectStore", () => {
  it("retries transient errors until success", async () => {
    const inner = new FlakyStore(3, "unavailable");
    await new RetryingObjectStore(inner, { attempts: 5, baseDelayMs: 1 }).put("k", Buffer.from("v"));
    expect(inner.calls).toBe(4);
  });

  it("gives up after the bounded number of attempts with a clear message", async () => {
    const inner = new FlakyStore(100, "unavailable");
    const e = await new RetryingObjectStore(inner, { attempts: 3, baseDelayMs: 1 })
      .put("k", Buffer.from("v"))
      .catch((x: unknown) => x);
    expect(inner.calls).toBe(3);
    expect(isCairnError(e, "unavailable")).toBe(true);
    expect((e as Error).message).toContain("gave up after 3 attempts");
  });

  it("does not retry permanent errors", async () => {
    const inner = new FlakyStore(1, "permission-denied");
    const e = await new RetryingObjectStore(inner, { attempts: 5, baseDelayMs: 1 })
      .put("k", Buffer.from("v"))
      .catch((x: unknown) => x);
    expect(inner.calls).toBe(1);
    expect(isCairnError(e, "permission-denied")).toBe(true);
  });

  it("stops waiting when the signal aborts", async () => {
    const inner = new FlakyStore(100, "unavailable");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const e = await new RetryingObjectStore(inner, { attempts: 100, baseDelayMs: 20 })
      .put("k", Buffer.from("v"), { signal: ac.signal })
      .catch((x: unknown) => x);
    expect(isCairnError(e, "aborted")).toBe(true);
  });
});

describe("ConcurrencyLimitedObjectStore", () => {
  it("never has more than the limit in flight", async () => {
    let inFlight = 0;
    let max = 0;
    const inner = new MemoryObjectStore();
    const slow: ObjectStore = {
      location: "slow",
      commitStaged: (o) => inner.commitStaged(o),
      discardStaged: (w, o) => inner.discardStaged(w, o),
      async put(k, d) {
        inFlight++;
        max = Math.max(max, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return inner.put(k, d);
      },
      get: (k, o) => inner.get(k, o),
      head: (k, o) => inner.head(k, o),
      delete: (k, o) => inner.delete(k, o),
      list: (p, o) => inner.list(p, o),
    };
    const s = new ConcurrencyLimitedObjectStore(slow, 3);
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(`k${i}`, Buffer.from("v"))));
    expect(max).toBe(3);
  });
});

describe("BandwidthLimitedObjectStore", () => {
  it("holds the byte rate", async () => {
    const s = new BandwidthLimitedObjectStore(new MemoryObjectStore(), 1_000_000);
    const t = Date.now();
    // 1 MB of budget is available at once; the next 0.5 MB must wait ~0.5 s
    for (let i = 0; i < 6; i++) await s.put(`k${i}`, Buffer.alloc(250_000));
    const ms = Date.now() - t;
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(ms).toBeLessThan(2000);
  });
});
