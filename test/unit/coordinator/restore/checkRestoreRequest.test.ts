import { describe, expect, it } from "vitest";
import { checkRestoreDisk, checkRestoreVm } from "../../../../coordinator/src/restore/checkRestoreRequest.js";
import type { SnapshotRecord } from "../../../../coordinator/src/store/records.js";

const snap: SnapshotRecord = {
  id: "20261122T080000Z-0123abcd",
  repository: "main",
  vmUuid: "u1",
  vmName: "web",
  jobId: "job-1",
  policy: null,
  createdMs: 1,
  logicalBytes: 2 << 20,
  bytesStored: 4096,
  kinds: { vda: "full", vdb: "incremental" },
};
const disk = (over = {}) => ({
  snapshotId: snap.id,
  diskTarget: "vda",
  hostId: "",
  destination: "/var/lib/restore/vda.img",
  format: "",
  overwrite: false,
  ...over,
});
const vm = (over = {}) => ({
  snapshotId: snap.id,
  hostId: "",
  newName: "",
  destinationDir: "",
  pool: "",
  format: "",
  start: false,
  inPlace: false,
  ...over,
});
const refused = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e as { code: string; message: string };
  }
  throw new Error("not refused");
};

describe("restore requests are checked at the edge, each refusal naming the field", () => {
  it("a disk restore: defaults raw; the snapshot, disk, path and format must be right", () => {
    expect(checkRestoreDisk(disk(), snap).format).toBe("raw");
    expect(checkRestoreDisk(disk({ format: "qcow2" }), snap).format).toBe("qcow2");
    expect(refused(() => checkRestoreDisk(disk({ snapshotId: "" }), snap)).message).toBe(
      "snapshot_id: is required",
    );
    expect(refused(() => checkRestoreDisk(disk({ snapshotId: "x" }), undefined))).toMatchObject({
      code: "not-found",
      message: "snapshot_id: snapshot x is not in the index",
    });
    expect(refused(() => checkRestoreDisk(disk({ diskTarget: "sda" }), snap))).toMatchObject({
      code: "not-found",
      message: `disk_target: snapshot ${snap.id} has no disk sda (it has vda, vdb)`,
    });
    expect(refused(() => checkRestoreDisk(disk({ diskTarget: "" }), snap)).message).toMatch(
      /^disk_target: is required/,
    );
    expect(refused(() => checkRestoreDisk(disk({ destination: "vda.img" }), snap))).toMatchObject({
      code: "invalid-argument",
      message: 'destination: "vda.img" is not an absolute path',
    });
    for (const p of ["/srv/../etc/x", "/srv/./x", "/srv//x", "/srv/x/", "/srv/\0x"])
      expect(refused(() => checkRestoreDisk(disk({ destination: p }), snap)).message).toMatch(
        /^destination: /,
      );
    expect(refused(() => checkRestoreDisk(disk({ format: "vmdk" }), snap)).message).toBe(
      'format: "vmdk" is not raw or qcow2',
    );
  });

  it("a VM restore: defaults qcow2; name, directory and pool are checked; dir and pool exclude each other", () => {
    expect(checkRestoreVm(vm(), snap).format).toBe("qcow2");
    expect(
      checkRestoreVm(vm({ newName: "web-2", destinationDir: "/srv/vms", format: "raw" }), snap),
    ).toMatchObject({
      newName: "web-2",
      format: "raw",
    });
    for (const name of ["../x", "a/b", "-x", ".hidden", "a b", "x".repeat(101)])
      expect(refused(() => checkRestoreVm(vm({ newName: name }), snap)).message).toMatch(
        /^new_name: .* is not a valid domain name/,
      );
    expect(refused(() => checkRestoreVm(vm({ destinationDir: "vms" }), snap)).message).toBe(
      'destination_dir: "vms" is not an absolute path',
    );
    expect(refused(() => checkRestoreVm(vm({ destinationDir: "/srv", pool: "default" }), snap)).message).toBe(
      "pool: excludes destination_dir: the disks go to a directory or to a pool, not both",
    );
    expect(refused(() => checkRestoreVm(vm({ pool: "a/b" }), snap)).message).toMatch(/^pool: /);
    expect(refused(() => checkRestoreVm(vm({ format: "vdi" }), snap)).message).toMatch(/^format: /);
    expect(refused(() => checkRestoreVm(vm({ snapshotId: "nope" }), undefined)).code).toBe("not-found");
  });

  it("in place excludes a new name, a directory and a pool", () => {
    expect(checkRestoreVm(vm({ inPlace: true }), snap)).toMatchObject({ inPlace: true, format: "qcow2" });
    expect(refused(() => checkRestoreVm(vm({ inPlace: true, newName: "x", pool: "p" }), snap))).toMatchObject(
      {
        code: "invalid-argument",
        message:
          "in_place: excludes new_name, pool: an in-place restore writes the original's disks where they are",
      },
    );
  });
});
