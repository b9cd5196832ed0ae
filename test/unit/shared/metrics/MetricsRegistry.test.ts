import { describe, expect, it } from "vitest";
import { MetricsRegistry } from "../../../../shared/src/metrics/MetricsRegistry.js";
import { startMetricsServer } from "../../../../shared/src/metrics/startMetricsServer.js";

describe("metrics", () => {
  it("renders counters, gauges and cumulative histograms in the text format, escaping label values", () => {
    const r = new MetricsRegistry({ processMetrics: false });
    const c = r.counter("cairn_jobs_total", "Jobs\nby state", ["state"]);
    c.inc({ state: "ok" });
    c.inc({ state: 'we"ird\\n' }, 2);
    const g = r.gauge("cairn_up", "Up", []);
    g.set({}, 1);
    const h = r.histogram("cairn_seconds", "Durations", [], [0.1, 1]);
    h.observe({}, 0.05);
    h.observe({}, 0.5);
    h.observe({}, 5);
    expect(r.render()).toBe(
      [
        "# HELP cairn_jobs_total Jobs\\nby state",
        "# TYPE cairn_jobs_total counter",
        'cairn_jobs_total{state="ok"} 1',
        'cairn_jobs_total{state="we\\"ird\\\\n"} 2',
        "# HELP cairn_up Up",
        "# TYPE cairn_up gauge",
        "cairn_up 1",
        "# HELP cairn_seconds Durations",
        "# TYPE cairn_seconds histogram",
        'cairn_seconds_bucket{le="0.1"} 1',
        'cairn_seconds_bucket{le="1"} 2',
        'cairn_seconds_bucket{le="+Inf"} 3',
        "cairn_seconds_sum 5.55",
        "cairn_seconds_count 3",
        "",
      ].join("\n"),
    );
  });

  it("refuses wrong labels, bad names, duplicates and decreasing counters", () => {
    const r = new MetricsRegistry({ processMetrics: false });
    const c = r.counter("a_total", "a", ["x"]);
    expect(() => c.inc({})).toThrow(/takes labels \[x\], got \[\]/);
    expect(() => c.inc({ x: "1", y: "2" })).toThrow(/takes labels/);
    expect(() => c.inc({ x: "1" }, -1)).toThrow(/only goes up/);
    expect(() => r.counter("a_total", "again", [])).toThrow(/already registered/);
    expect(() => r.gauge("bad-name", "x", [])).toThrow(/invalid/);
    expect(() => r.histogram("h", "x", [], [1, 0.5])).toThrow(/increase/);
  });

  it("serves /metrics over HTTP with the exposition content type, and 404 elsewhere", async () => {
    const r = new MetricsRegistry();
    r.counter("cairn_x_total", "x", []).inc();
    const s = await startMetricsServer({ listen: "127.0.0.1:0", registry: r });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(text).toMatch(/^cairn_x_total 1$/m);
      expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
      expect((await fetch(`http://127.0.0.1:${s.port}/`)).status).toBe(404);
    } finally {
      await s.close();
    }
    await expect(startMetricsServer({ listen: "nonsense", registry: r })).rejects.toThrow(/not host:port/);
  });
});
