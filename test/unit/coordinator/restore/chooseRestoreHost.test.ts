import { describe, expect, it } from "vitest";
import {
  chooseRestoreHost,
  type RestoreHost,
  type RestoreHostInput,
} from "../../../../coordinator/src/restore/chooseRestoreHost.js";
import type { ReachRecord } from "../../../../coordinator/src/store/records.js";

const ID = "a".repeat(32);
const host = (id: string, over: Partial<RestoreHost> = {}): RestoreHost => ({
  id,
  online: true,
  drained: false,
  roles: ["hypervisor"],
  ...over,
});
const reach = (hostId: string, over: Partial<ReachRecord> = {}): ReachRecord => ({
  repositoryId: ID,
  name: "main",
  location: "/srv/san/cairn",
  reachable: true,
  error: "",
  writeMiBs: 400,
  readMiBs: 500,
  probedMs: 1,
  hostId,
  ...over,
});
const unreached = (hostId: string) =>
  reach(hostId, { repositoryId: "", reachable: false, error: "ENOENT: /srv/san/cairn" });

const input = (over: Partial<RestoreHostInput> = {}): RestoreHostInput => ({
  requested: "",
  kind: "restore-disk",
  inPlace: false,
  vm: { name: "web", hostId: "kvm-1", present: true },
  lastBackupHost: "kvm-1",
  repository: { name: "main", location: "/srv/san/cairn", id: ID },
  hosts: [host("kvm-1"), host("kvm-2"), host("kvm-3"), host("mover-1", { roles: ["mover"] })],
  reach: [
    reach("kvm-1"),
    reach("kvm-2", { location: "s3://backup/cairn" }),
    unreached("kvm-3"),
    reach("mover-1"),
  ],
  ...over,
});

describe("chooseRestoreHost (docs/restore.md §1)", () => {
  it("the host asked for, with the location it reported reaching", () => {
    expect(chooseRestoreHost(input({ requested: "kvm-2" }))).toEqual({
      kind: "assign",
      hostId: "kvm-2",
      location: "s3://backup/cairn",
      reason: "kvm-2 (the host asked for) reaches repository main at s3://backup/cairn",
    });
  });

  it("else where the VM is defined now", () => {
    const c = chooseRestoreHost(input({ vm: { name: "web", hostId: "kvm-2", present: true } }));
    expect(c).toMatchObject({ kind: "assign", hostId: "kvm-2", location: "s3://backup/cairn" });
    expect(c.reason).toContain("where web is defined");
  });

  it("else, for a VM no longer defined, the host of its last backup", () => {
    const c = chooseRestoreHost(
      input({ vm: { name: "web", hostId: "kvm-2", present: false }, lastBackupHost: "kvm-1" }),
    );
    expect(c).toMatchObject({ kind: "assign", hostId: "kvm-1", location: "/srv/san/cairn" });
    expect(c.reason).toContain("the host of web's last backup");
  });

  it("fails when there is no host to choose, naming who reaches the repository", () => {
    const c = chooseRestoreHost(input({ vm: undefined, lastBackupHost: undefined }));
    expect(c.kind).toBe("fail");
    expect(c.reason).toMatch(/name one \(--host\); repository main is reached by kvm-1, kvm-2, mover-1$/);
  });

  it("fails when the host does not reach the repository, naming the repository and the hosts that do", () => {
    expect(chooseRestoreHost(input({ requested: "kvm-3" }))).toEqual({
      kind: "fail",
      hostId: "kvm-3",
      reason:
        "host kvm-3 does not reach repository main (ENOENT: /srv/san/cairn); repository main is reached by kvm-1, kvm-2, mover-1",
    });
  });

  it("fails when the host has not probed the repository yet", () => {
    const c = chooseRestoreHost(input({ reach: [reach("kvm-2")] }));
    expect(c).toMatchObject({ kind: "fail", hostId: "kvm-1" });
    expect(c.reason).toBe(
      "host kvm-1 has not reported whether it reaches repository main yet; repository main is reached by kvm-2",
    );
  });

  it("fails at once for an offline or drained host (and says which reachers are down)", () => {
    const hosts = [host("kvm-1", { online: false }), host("kvm-2", { drained: true }), host("kvm-3")];
    const offline = chooseRestoreHost(input({ hosts }));
    expect(offline.reason).toBe(
      "host kvm-1 is offline; repository main is reached by kvm-1 (offline), kvm-2 (drained)",
    );
    expect(chooseRestoreHost(input({ hosts, requested: "kvm-2" })).reason).toMatch(/^host kvm-2 is drained;/);
    expect(chooseRestoreHost(input({ hosts, requested: "kvm-9" })).reason).toMatch(
      /^host kvm-9 is not enrolled;/,
    );
  });

  it("a whole VM needs a hypervisor host; a disk may go to any host that reaches the repository", () => {
    expect(chooseRestoreHost(input({ requested: "mover-1" }))).toMatchObject({
      kind: "assign",
      hostId: "mover-1",
    });
    const vm = chooseRestoreHost(input({ requested: "mover-1", kind: "restore-vm" }));
    expect(vm).toMatchObject({ kind: "fail" });
    expect(vm.reason).toMatch(/not a hypervisor host \(roles: mover\)/);
  });

  it("in place runs where the VM is defined, and only there", () => {
    const base = { kind: "restore-vm" as const, inPlace: true };
    expect(
      chooseRestoreHost(input({ ...base, vm: { name: "web", hostId: "kvm-2", present: true } })),
    ).toMatchObject({ kind: "assign", hostId: "kvm-2" });
    expect(chooseRestoreHost(input({ ...base, requested: "kvm-2" })).reason).toBe(
      "VM web is defined on kvm-1, not kvm-2: an in-place restore runs where it is",
    );
    expect(
      chooseRestoreHost(input({ ...base, vm: { name: "web", hostId: "kvm-1", present: false } })).reason,
    ).toMatch(/^VM web is not defined on any host/);
  });
});
