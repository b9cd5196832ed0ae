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
    expect(p).toMatchObject({ transfer: "network", movers: { names: ["mover-1"], globs: ["backup-*"] } });
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
      selector: { names: [], globs: ["web-*"], labels: {} },
    });
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
  ])("refuses %s naming the field", (override, message) => {
    const key = override.split(":")[0] as string;
    const doc = BASE.split("\n")
      .filter((l) => !l.startsWith(`${key}:`))
      .join("\n");
    expect(() => parsePolicyYaml(`${doc}\n${override}\n`, "policy.yaml")).toThrow(
      expect.objectContaining({ code: "invalid-argument", message: expect.stringMatching(message) }),
    );
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
  });
});
