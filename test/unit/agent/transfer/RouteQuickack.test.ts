import { describe, expect, it, vi } from "vitest";
import { RouteQuickack } from "../../../../agent/src/transfer/RouteQuickack.js";
import { createLogger } from "../../../../shared/src/log/createLogger.js";

function logger() {
  const log = createLogger("test", "silent");
  const warn = vi.spyOn(log, "warn");
  return { log, warn };
}

describe("RouteQuickack", () => {
  it("warns once per exporter whose route has no quickack", async () => {
    const { log, warn } = logger();
    const get = vi.fn(async () => ({ dev: "eth0", metrics: [] }));
    const q = new RouteQuickack(log, get);
    expect(await q.check("10.0.0.5", AbortSignal.timeout(5000))).toBe(false);
    expect(await q.check("10.0.0.5", AbortSignal.timeout(5000))).toBe(false);
    expect(get).toHaveBeenCalledTimes(1);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[1])).toMatch(/quickack 1/);
  });

  it("is quiet when the route has quickack, and when the route cannot be read", async () => {
    const { log, warn } = logger();
    const q = new RouteQuickack(log, async (a) => {
      if (a === "10.0.0.6") return { dev: "eth0", metrics: [{ quickack: 1 }] };
      throw new Error("ip failed");
    });
    expect(await q.check("10.0.0.6", AbortSignal.timeout(5000))).toBe(true);
    expect(await q.check("10.0.0.7", AbortSignal.timeout(5000))).toBeUndefined();
    expect(warn).not.toHaveBeenCalled();
  });

  it("reads the real kernel route (loopback has no quickack) and never passes names to ip", async () => {
    const { log, warn } = logger();
    const q = new RouteQuickack(log);
    expect(await q.check("127.0.0.1", AbortSignal.timeout(5000))).toBe(false);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(await q.check("-h", AbortSignal.timeout(5000))).toBeUndefined();
  });
});
