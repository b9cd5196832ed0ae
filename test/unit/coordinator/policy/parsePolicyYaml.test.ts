import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseBandwidth } from "../../../../coordinator/src/policy/Policy.js";
import { parsePolicyYaml } from "../../../../coordinator/src/policy/parsePolicyYaml.js";
import { policyToYaml } from "../../../../coordinator/src/policy/policyToYaml.js";

const BASE = `name: nightly
selector: {globs: ["web-*"]}
schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}
mode: {kind: incremental, fullEvery: 7}
repository: main
`;

describe("policy documents", () => {
  it("reads a maintenance schedule: verify with a share of the data read, and GC", () => {
    const p = parsePolicyYaml(
      `${BASE}maintenance: {verify: "0 4 * * 0", readData: 10%, gc: "0 5 * * 0"}\n`,
      "p",
    );
    expect(p.maintenance).toEqual({ verify: "0 4 * * 0", readData: 10, gc: "0 5 * * 0" });
    expect(parsePolicyYaml(policyToYaml(p), "again").maintenance).toEqual(p.maintenance);
    expect(parsePolicyYaml(BASE, "p").maintenance).toBeUndefined();
  });

  it("reads the transfer path and the movers selector (docs/transfer-paths.md §3); refuses unsafe globs", () => {
    expect(parsePolicyYaml(BASE, "p")).toMatchObject({ transfer: "auto", movers: { names: [], globs: [] } });
    const p = parsePolicyYaml(
      `${BASE}transfer: network\nmovers: {names: [mover-1], globs: ["backup-*"]}\n`,
      "p",
    );
    expect(p).toMatchObject({ transfer: "network", movers: { names: ["mover-1"] } });
    expect(p.movers.globs.map((g) => g.source)).toEqual(["backup-*"]);
    expect(parsePolicyYaml(policyToYaml(p), "again")).toMatchObject({
      transfer: "network",
      movers: p.movers,
    });
    expect(() => parsePolicyYaml(`${BASE}transfer: sneakernet\n`, "p")).toThrow(/transfer/);
    expect(() => parsePolicyYaml(`${BASE}movers: {globs: ["(a+)+$"]}\n`, "p")).toThrow(/movers/);
    expect(() => parsePolicyYaml(`${BASE}movers: {globs: ["${"*".repeat(64)}"]}\n`, "p")).toThrow(/movers/);
    expect(() => parsePolicyYaml(`${BASE}movers: {names: ["not a host"]}\n`, "p")).toThrow(/movers/);
  });

  it("fills defaults and normalizes bandwidth", () => {
    const p = parsePolicyYaml(`${BASE}bandwidth: 100MiB/s\n`, "p.yaml");
    expect(p).toMatchObject({
      name: "nightly",
      quiesce: "preferred",
      retention: { keepLast: 7 },
      concurrency: { perHost: 2, perRepository: 4, global: 8 },
      priority: 50,
      disabled: false,
      bandwidthBytesPerSecond: 100 * 1024 * 1024,
      selector: { names: [], labels: {} },
    });
    expect(p.selector.globs.map((g) => g.source)).toEqual(["web-*"]);
    expect(p.selector.globs[0]?.test("web-1")).toBe(true); // compiled here, once
    expect(parsePolicyYaml(BASE, "p").bandwidthBytesPerSecond).toBe(0);
  });

  it.each([
    ["schedule: {cron: '0 25 * * *'}", /schedule\.cron: "0 25 \* \* \*" is not a valid cron expression/],
    [
      "schedule: {cron: '0 2 * * *', timezone: Mars/Olympus}",
      /schedule\.timezone: "Mars\/Olympus" is not an IANA time zone/,
    ],
    ["selector: {}", /selector: give at least one of names, globs, labels/],
    ["mode: {kind: weekly}", /mode/],
    ["mode: {kind: full, fullEvery: 3}", /mode: .*fullEvery/],
    ["retention: {keepLast: 0}", /retention: keep something/],
    ["retention: {keepLast: -1}", /retention\.keepLast/],
    ["quiesce: sometimes", /quiesce/],
    ["bandwidth: fast", /bandwidth: must be bytes per second/],
    ["concurrency: {perHost: 0}", /concurrency\.perHost/],
    ["window: {start: '25:00', end: '06:00'}", /window\.start: must be "HH:MM"/],
    ["priority: 101", /priority/],
    ["name: Bad Name", /name: must be lowercase/],
    ["colour: red", /\(top level\): colour/],
    ["maintenance: {verify: 'every sunday'}", /maintenance\.verify: "every sunday" is not a valid cron/],
    ["maintenance: {verify: '0 4 * * 0', readData: 110%}", /maintenance\.readData: must be a percentage/],
    ["maintenance: {prune: '0 4 * * 0'}", /maintenance/],
    // Globs are compiled here: an invalid one is refused with the field and the pattern (issue 24).
    [
      "selector: {globs: ['web-*', '[z-a]']}",
      /selector\.globs\.1: "\[z-a\]" is not a valid glob: the range z-a/,
    ],
    [
      "selector: {globs: ['web-[abc']}",
      /selector\.globs\.0: "web-\[abc" is not a valid glob: .* never closed/,
    ],
    ["movers: {globs: ['[z-a]']}", /movers\.globs\.0: "\[z-a\]" is not a valid glob/],
    [`selector: {globs: ['${"*".repeat(257)}']}`, /selector\.globs\.0/],
    // Bandwidth is finite, whole bytes per second, at most 1 TiB/s.
    [`bandwidth: ${"9".repeat(400)}TiB/s`, /bandwidth: must be bytes per second/],
    [`bandwidth: ${"9".repeat(400)}`, /bandwidth: must be bytes per second/],
    ["bandwidth: 2TiB/s", /bandwidth: .*at most 1TiB\/s/],
    ["bandwidth: 0.5", /bandwidth: .*at least 1 B\/s/],
    ["bandwidth: -5", /bandwidth/],
    // Crons fire, and not more often than the coordinator's minimum (300 s by default).
    ["schedule: {cron: '0 0 30 2 *'}", /schedule\.cron: "0 0 30 2 \*" never fires/],
    ["schedule: {cron: '0 0 31 4,6,9,11 *'}", /schedule\.cron: .* never fires/],
    [
      "schedule: {cron: '* * * * *'}",
      /schedule\.cron: "\* \* \* \* \*" fires 60 s apart \(at 00:00:00 and 00:01:00\), more often than the coordinator's minimum of 300 s/,
    ],
    ["schedule: {cron: '*/10 * * * * *'}", /schedule\.cron: .* fires 10 s apart/],
    ["schedule: {cron: '0,59 0,23 * * *'}", /fires 60 s apart \(at 23:59:00 and 00:00:00 the next day\)/],
    ["maintenance: {verify: '0 4 * * 0', gc: '*/2 * * * *'}", /maintenance\.gc: .* fires 120 s apart/],
  ])("refuses %s naming the field", (override, message) => {
    const key = override.split(":")[0] as string;
    const doc = BASE.split("\n")
      .filter((l) => !l.startsWith(`${key}:`))
      .join("\n");
    expect(() => parsePolicyYaml(`${doc}\n${override}\n`, "policy.yaml")).toThrow(
      expect.objectContaining({ code: "invalid-argument", message: expect.stringMatching(message) }),
    );
  });

  it("takes the cron minimum from the coordinator's limits; judges crons by how close their fires come", () => {
    const cron = (c: string, minCronIntervalSeconds = 300) =>
      parsePolicyYaml(BASE.replace('"0 2 * * *"', JSON.stringify(c)), "p", { minCronIntervalSeconds })
        .schedule.cron;
    expect(cron("*/5 * * * *")).toBe("*/5 * * * *"); // exactly the minimum
    expect(cron("* * * * *", 60)).toBe("* * * * *");
    expect(cron("* * * * * *", 1)).toBe("* * * * * *");
    expect(cron("0 0 29 2 *")).toBe("0 0 29 2 *"); // leap days only, but it fires
    // Close across midnight, but never on two consecutive days (Mondays): 6 days apart.
    expect(cron("0,59 0,23 * * 1", 3540)).toBe("0,59 0,23 * * 1");
    expect(() => cron("0,59 0,23 * * 1,2", 3540)).toThrow(
      /fires 60 s apart \(at 23:59:00 and 00:00:00 the next day\)/,
    );
    expect(() => cron("*/5 * * * *", 600)).toThrow(/fires 300 s apart.*minimum of 600 s/);
  });

  it("refuses YAML that is not a mapping, or not YAML at all", () => {
    expect(() => parsePolicyYaml("- a\n- b\n", "x")).toThrow(/a policy is a YAML mapping/);
    expect(() => parsePolicyYaml("name: [unclosed\n", "x")).toThrow(/x: not valid YAML/);
  });

  it("round-trips through policyToYaml (property)", () => {
    const arb = fc.record({
      keepLast: fc.integer({ min: 1, max: 50 }),
      daily: fc.integer({ min: 0, max: 50 }),
      fullEvery: fc.integer({ min: 0, max: 30 }),
      kind: fc.constantFrom("incremental", "differential", "full"),
      bw: fc.integer({ min: 0, max: 2 ** 40 }),
      priority: fc.integer({ min: 0, max: 100 }),
      window: fc.option(fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 23 }))),
      labels: fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.stringMatching(/^[a-z0-9]{0,6}$/)),
    });
    fc.assert(
      fc.property(arb, (a) => {
        const mode = a.kind === "full" ? "{kind: full}" : `{kind: ${a.kind}, fullEvery: ${a.fullEvery}}`;
        const hh = (h: number) => `"${String(h).padStart(2, "0")}:00"`;
        const doc = `name: p\nselector: {names: [a], labels: ${JSON.stringify(a.labels)}}\nschedule: {cron: "*/5 * * * *"}\nmode: ${mode}\nrepository: r\nretention: {keepLast: ${a.keepLast}, daily: ${a.daily}}\nbandwidth: ${a.bw}\npriority: ${a.priority}\n${a.window ? `window: {start: ${hh(a.window[0])}, end: ${hh(a.window[1])}}\n` : ""}`;
        const p = parsePolicyYaml(doc, "gen");
        expect(parsePolicyYaml(policyToYaml(p), "again")).toEqual(p);
      }),
    );
  });

  it("parses bandwidth units", () => {
    expect(parseBandwidth("1KiB/s")).toBe(1024);
    expect(parseBandwidth("1kB/s")).toBe(1000);
    expect(parseBandwidth("1.5GB/s")).toBe(1.5e9);
    expect(parseBandwidth(42)).toBe(42);
    expect(parseBandwidth("12 parsecs")).toBeUndefined();
    expect(parseBandwidth(-1)).toBeUndefined();
    expect(parseBandwidth(0)).toBe(0); // no limit
    expect(parseBandwidth("1TiB/s")).toBe(2 ** 40);
    expect(parseBandwidth(`${"9".repeat(400)}TiB/s`)).toBeUndefined(); // was Infinity
    expect(parseBandwidth(Number.POSITIVE_INFINITY)).toBeUndefined();
    expect(parseBandwidth(Number.NaN)).toBeUndefined();
    expect(parseBandwidth("0.5B/s")).toBeUndefined(); // would floor to 0: no limit
  });
});
