import { describe, expect, it } from "vitest";
import { Glob } from "../../../../coordinator/src/policy/Glob.js";
import type { ReachRecord } from "../../../../coordinator/src/store/records.js";
import {
  chooseTransferPath,
  type TransferHost,
  type TransferInput,
} from "../../../../coordinator/src/transfer/chooseTransferPath.js";

const ID = "a".repeat(32);
const host = (id: string, over: Partial<TransferHost> = {}): TransferHost => ({
  id,
  roles: ["hypervisor"],
  online: true,
  drained: false,
  applianceOf: "",
  running: 0,
  ...over,
});
const mover = (id: string, over: Partial<TransferHost> = {}) => host(id, { roles: ["mover"], ...over });
const reach = (hostId: string, over: Partial<ReachRecord> = {}): ReachRecord => ({
  repositoryId: ID,
  name: "main",
  location: "/srv/san/cairn",
  reachable: true,
  error: "",
  writeMiBs: 412,
  readMiBs: 500,
  probedMs: 1,
  hostId,
  ...over,
});
const unreached = (hostId: string) =>
  reach(hostId, { repositoryId: "", reachable: false, error: "ENOENT: /srv/san/cairn", writeMiBs: 0 });

const input = (over: Partial<TransferInput>): TransferInput => ({
  vmHostId: "kvm-01",
  repository: { name: "main", location: "/srv/san/cairn", id: ID },
  mode: "auto",
  movers: { names: [], globs: [] },
  perHostLimit: 2,
  hosts: [host("kvm-01")],
  reach: [],
  ...over,
});

describe("chooseTransferPath (docs/transfer-paths.md §3)", () => {
  it("lan-free when the VM host reaches the repository, through the location it reported", () => {
    const r = chooseTransferPath(input({ reach: [reach("kvm-01", { location: "/mnt/cairn" })] }));
    expect(r).toEqual({
      kind: "assign",
      decision: {
        path: "lan-free",
        readerHostId: "kvm-01",
        location: "/mnt/cairn",
        reason: "lan-free: kvm-01 reaches repository main (/mnt/cairn, 412 MiB/s)",
      },
    });
  });

  it("waits while the VM host has not reported reach", () => {
    const r = chooseTransferPath(
      input({ hosts: [host("kvm-01"), mover("mover-1")], reach: [reach("mover-1")] }),
    );
    expect(r).toMatchObject({ kind: "wait", reason: expect.stringContaining("kvm-01 to report") });
  });

  it("matches reports by name while the repository's id is unknown", () => {
    const r = chooseTransferPath(
      input({ repository: { name: "main", location: "/srv/san/cairn" }, reach: [reach("kvm-01")] }),
    );
    expect(r).toMatchObject({ kind: "assign", decision: { path: "lan-free" } });
  });

  it("network through a mover when the VM host cannot reach it, reason in plain words", () => {
    const r = chooseTransferPath(
      input({
        vmHostId: "kvm-02",
        hosts: [host("kvm-02"), mover("mover-1")],
        reach: [unreached("kvm-02"), reach("mover-1", { location: "/backup/cairn", writeMiBs: 300 })],
      }),
    );
    expect(r.kind).toBe("assign");
    if (r.kind !== "assign") return;
    expect(r.decision).toMatchObject({ path: "network", readerHostId: "mover-1", location: "/backup/cairn" });
    expect(r.decision.reason).toMatch(/^network via mover-1: kvm-02 cannot reach repository main/);
  });

  it("policy network skips lan-free; lan-free asked but unreachable fails naming the reachers", () => {
    const hosts = [host("kvm-01"), mover("mover-1")];
    const both = [reach("kvm-01"), reach("mover-1")];
    expect(chooseTransferPath(input({ mode: "network", hosts, reach: both }))).toMatchObject({
      kind: "assign",
      decision: { path: "network", readerHostId: "mover-1", reason: expect.stringContaining("policy asks") },
    });
    const r = chooseTransferPath(
      input({ mode: "lan-free", hosts, reach: [unreached("kvm-01"), reach("mover-1")] }),
    );
    expect(r).toMatchObject({ kind: "fail" });
    if (r.kind === "fail")
      expect(r.reason).toMatch(/lan-free.*kvm-01 does not reach repository main.*reached by mover-1/);
  });

  it("no path: fails naming the repository and the hosts that reach it", () => {
    const r = chooseTransferPath(
      input({
        vmHostId: "kvm-02",
        hosts: [host("kvm-01"), host("kvm-02"), mover("mover-1")],
        reach: [reach("kvm-01"), unreached("kvm-02"), unreached("mover-1")],
      }),
    );
    expect(r.kind).toBe("fail");
    if (r.kind === "fail") expect(r.reason).toMatch(/repository main.*reached by kvm-01$/);
  });

  it("offline or drained movers do not qualify; busy ones keep the job queued", () => {
    const base = { vmHostId: "kvm-02", reach: [unreached("kvm-02"), reach("m1"), reach("m2")] };
    expect(
      chooseTransferPath(
        input({
          ...base,
          hosts: [host("kvm-02"), mover("m1", { online: false }), mover("m2", { drained: true })],
        }),
      ),
    ).toMatchObject({ kind: "fail", reason: expect.stringContaining("m1 (offline), m2 (drained)") });
    expect(
      chooseTransferPath(
        input({
          ...base,
          hosts: [host("kvm-02"), mover("m1", { running: 2 }), mover("m2", { online: false })],
        }),
      ),
    ).toMatchObject({ kind: "wait", reason: expect.stringContaining("concurrency limit (m1)") });
  });

  it("hypervisor-only hosts never read for others; the movers selector filters", () => {
    const hosts = [host("kvm-01"), host("kvm-02"), mover("m-a"), mover("m-b"), mover("x-1")];
    const all = [
      unreached("kvm-02"),
      reach("kvm-01"),
      reach("m-a"),
      reach("m-b", { writeMiBs: 900 }),
      reach("x-1"),
    ];
    const pick = (movers: TransferInput["movers"]) => {
      const r = chooseTransferPath(input({ vmHostId: "kvm-02", hosts, reach: all, movers }));
      return r.kind === "assign" ? r.decision.readerHostId : r.kind;
    };
    expect(pick({ names: [], globs: [] })).toBe("m-b");
    expect(pick({ names: ["x-1"], globs: [] })).toBe("x-1");
    expect(pick({ names: [], globs: [Glob.compile("m-[!b]")] })).toBe("m-a");
    expect(pick({ names: ["kvm-01"], globs: [] })).toBe("fail");
  });

  it("orders movers: fewest running, higher write speed, appliance on the VM host, id; avoids the failed one", () => {
    const all = [unreached("kvm-02"), reach("m1"), reach("m2"), reach("m3")];
    const pick = (hosts: TransferHost[], avoidReader?: string) => {
      const r = chooseTransferPath(
        input({ vmHostId: "kvm-02", hosts: [host("kvm-02"), ...hosts], reach: all, avoidReader }),
      );
      return r.kind === "assign" ? r.decision.readerHostId : r.kind;
    };
    expect(pick([mover("m1", { running: 1 }), mover("m2"), mover("m3", { running: 1 })])).toBe("m2");
    expect(pick([mover("m1"), mover("m2"), mover("m3", { applianceOf: "kvm-02" })])).toBe("m3");
    expect(pick([mover("m1"), mover("m2")])).toBe("m1");
    expect(pick([mover("m1"), mover("m2")], "m1")).toBe("m2");
    // The failed mover is still used when it is the only one.
    expect(pick([mover("m1")], "m1")).toBe("m1");
    const faster = [unreached("kvm-02"), reach("m1", { writeMiBs: 100 }), reach("m2", { writeMiBs: 200 })];
    const r = chooseTransferPath(
      input({ vmHostId: "kvm-02", hosts: [host("kvm-02"), mover("m1"), mover("m2")], reach: faster }),
    );
    expect(r).toMatchObject({ decision: { readerHostId: "m2" } });
  });

  it("waits for a mover that has not reported reach rather than failing", () => {
    const r = chooseTransferPath(
      input({ vmHostId: "kvm-02", hosts: [host("kvm-02"), mover("m1")], reach: [unreached("kvm-02")] }),
    );
    expect(r).toMatchObject({ kind: "wait", reason: expect.stringContaining("m1") });
  });

  it("a VM host without the hypervisor role gets no backup job", () => {
    const r = chooseTransferPath(input({ hosts: [mover("kvm-01")], reach: [reach("kvm-01")] }));
    expect(r).toMatchObject({ kind: "fail", reason: expect.stringContaining("not a hypervisor") });
  });
});
