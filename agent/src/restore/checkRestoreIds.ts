import { CairnError } from "../../../shared/src/errors/CairnError.js";

// The format's snapshot id (docs/repository-format.md §7): it names an object key.
const SNAPSHOT_ID = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;
// libvirt disk targets ("vda", "sdb", "hdc", "nvme0n1"): they name restored files.
const DISK_TARGET = /^[a-z][a-z0-9]{0,31}$/;
// A restored domain's name becomes file names (<name>-<target>.<format>, <name>_VARS.fd) and a
// virsh argument: letters, digits, ".", "_", "+", "-", not starting with a punctuation mark
// (virsh would read "-x" as an option), no "..", bounded.
const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/;

/**
 * Ids from the wire (or from a manifest) that reach a path or virsh in a restore, checked before
 * anything is read or written ("invalid-argument" names the field and the value).
 */
export function checkRestoreIds(ids: {
  snapshotId?: string;
  diskTarget?: string;
  domainName?: string;
}): void {
  if (ids.snapshotId !== undefined && !SNAPSHOT_ID.test(ids.snapshotId))
    throw new CairnError(
      "invalid-argument",
      `snapshot_id ${JSON.stringify(ids.snapshotId)} is not a snapshot id`,
      {
        hint: "snapshot ids look like 20261208T012758Z-0a1b2c3d (cairn snapshots list shows them)",
      },
    );
  if (ids.diskTarget !== undefined && !DISK_TARGET.test(ids.diskTarget))
    throw new CairnError(
      "invalid-argument",
      `disk_target ${JSON.stringify(ids.diskTarget)} is not a disk target`,
      {
        hint: "disk targets are libvirt's target names, such as vda or sdb",
      },
    );
  if (ids.domainName !== undefined && (!DOMAIN_NAME.test(ids.domainName) || ids.domainName.includes("..")))
    throw new CairnError(
      "invalid-argument",
      `domain name ${JSON.stringify(ids.domainName)} is not allowed for a restore`,
      {
        hint: "name the new domain with letters, digits, '.', '_', '+' and '-' (at most 100, starting with a letter or digit, no '..')",
      },
    );
}
