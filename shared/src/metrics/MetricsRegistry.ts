import { CairnError } from "../errors/CairnError.js";

type Labels = Record<string, string>;
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeValue = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const fmt = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN");

abstract class Metric {
  protected readonly series = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME.test(name))
      throw new CairnError("invalid-argument", `metric name ${JSON.stringify(name)} is invalid`);
    for (const l of labelNames)
      if (!LABEL.test(l) || l.startsWith("__"))
        throw new CairnError("invalid-argument", `label name ${JSON.stringify(l)} of ${name} is invalid`);
  }

  protected key(labels: Labels): string {
    const keys = Object.keys(labels);
    if (keys.length !== this.labelNames.length || !this.labelNames.every((l) => l in labels))
      throw new CairnError(
        "invalid-argument",
        `${this.name} takes labels [${this.labelNames.join(", ")}], got [${keys.join(", ")}]`,
      );
    return this.labelNames.map((l) => labels[l]).join("\u0000");
  }

  protected labelText(labels: Labels, extra?: [string, string]): string {
    const pairs = this.labelNames.map((l) => `${l}="${escapeValue(labels[l] as string)}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeValue(extra[1])}"`);
    return pairs.length ? `{${pairs.join(",")}}` : "";
  }

  abstract type: string;
  abstract samples(): string[];

  render(): string {
    return [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
      ...this.samples(),
    ].join("\n");
  }
}

export class Counter extends Metric {
  type = "counter";
  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new CairnError("invalid-argument", `${this.name}: a counter only goes up`);
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value += by;
    else this.series.set(k, { labels: { ...labels }, value: by });
  }
  get(labels: Labels = {}): number {
    return this.series.get(this.key(labels))?.value ?? 0;
  }
  samples(): string[] {
    if (!this.series.size && !this.labelNames.length) return [`${this.name} 0`];
    return [...this.series.values()].map((s) => `${this.name}${this.labelText(s.labels)} ${fmt(s.value)}`);
  }
}

export class Gauge extends Metric {
  type = "gauge";
  private collector: (() => void) | undefined;
  set(labels: Labels, value: number): void {
    this.series.set(this.key(labels), { labels: { ...labels }, value });
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value += by;
    else this.series.set(k, { labels: { ...labels }, value: by });
  }
  dec(labels: Labels = {}, by = 1): void {
    this.inc(labels, -by);
  }
  /** A callback run before each scrape, for values computed on demand. */
  collect(fn: () => void): void {
    this.collector = fn;
  }
  samples(): string[] {
    this.collector?.();
    if (!this.series.size && !this.labelNames.length) return [`${this.name} 0`];
    return [...this.series.values()].map((s) => `${this.name}${this.labelText(s.labels)} ${fmt(s.value)}`);
  }
}

export class Histogram extends Metric {
  type = "histogram";
  private readonly data = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
    if (labelNames.includes("le"))
      throw new CairnError("invalid-argument", `${name}: "le" is reserved in histograms`);
    for (let i = 1; i < buckets.length; i++)
      if ((buckets[i] as number) <= (buckets[i - 1] as number))
        throw new CairnError("invalid-argument", `${name}: buckets must increase`);
  }
  observe(labels: Labels, v: number): void {
    const k = this.key(labels);
    let d = this.data.get(k);
    if (!d) {
      d = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.data.set(k, d);
    }
    for (let i = 0; i < this.buckets.length; i++)
      if (v <= (this.buckets[i] as number)) d.counts[i] = (d.counts[i] as number) + 1;
    d.sum += v;
    d.count++;
  }
  samples(): string[] {
    const out: string[] = [];
    for (const d of this.data.values()) {
      this.buckets.forEach((b, i) => {
        out.push(`${this.name}_bucket${this.labelText(d.labels, ["le", fmt(b)])} ${d.counts[i]}`);
      });
      out.push(`${this.name}_bucket${this.labelText(d.labels, ["le", "+Inf"])} ${d.count}`);
      out.push(`${this.name}_sum${this.labelText(d.labels)} ${fmt(d.sum)}`);
      out.push(`${this.name}_count${this.labelText(d.labels)} ${d.count}`);
    }
    return out;
  }
}

/** A small Prometheus registry (text exposition format 0.0.4), with process metrics built in. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) {
      const rss = this.gauge("process_resident_memory_bytes", "Resident memory size in bytes", []);
      rss.collect(() => rss.set({}, process.memoryUsage.rss()));
      const heap = this.gauge("nodejs_memory_bytes", "V8 heap and external memory by kind", ["kind"]);
      heap.collect(() => {
        const m = process.memoryUsage();
        heap.set({ kind: "heap_used" }, m.heapUsed);
        heap.set({ kind: "heap_total" }, m.heapTotal);
        heap.set({ kind: "external" }, m.external);
        heap.set({ kind: "array_buffers" }, m.arrayBuffers);
      });
      const cpu = this.gauge("process_cpu_seconds_total", "User and system CPU time spent in seconds", []);
      cpu.collect(() => {
        const u = process.cpuUsage();
        cpu.set({}, (u.user + u.system) / 1e6);
      });
    }
  }

  private add<M extends Metric>(m: M): M {
    if (this.metrics.has(m.name))
      throw new CairnError("already-exists", `metric ${m.name} is already registered`);
    this.metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[]): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[]): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  render(): string {
    return `${[...this.metrics.values()].map((m) => m.render()).join("\n")}\n`;
  }
}
