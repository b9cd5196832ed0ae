import { isAbsolute, normalize } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  CoordinatorServiceRestoreDiskRequest,
  CoordinatorServiceRestoreVmRequest,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import type { SnapshotRecord } from "../store/records.js";

/**
 * A domain or pool name Cairn accepts: libvirt's own rule is looser (anything without '/'), but the
 * new name also names the restored disks' files (`<name>-<target>.<format>`, docs/restore.md §3), so
 * it must be a safe file name part: no '/', no leading dot or dash, no spaces or control bytes.
 */
export const LIBVIRT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$/;

const FORMATS = ["raw", "qcow2"];

function bad(field: string, message: string, hint?: string): CairnError {
  return new CairnError("invalid-argument", `${field}: ${message}`, hint ? { hint } : {});
}

/** An absolute path on the target host, as written: no NUL, no `..` or `.` parts, no trailing `/`. */
function checkPath(field: string, p: string): void {
  if (!p) throw bad(field, "is required (an absolute path on the target host)");
  if (p.includes("\0")) throw bad(field, "contains a NUL byte");
  if (!isAbsolute(p)) throw bad(field, `${JSON.stringify(p)} is not an absolute path`);
  if (normalize(p) !== p || (p.length > 1 && p.endsWith("/")))
    throw bad(
      field,
      `${JSON.stringify(p)} is not a plain absolute path (no "..", ".", "//" or trailing "/")`,
    );
}

function checkFormat(field: string, format: string, fallback: string): string {
  const f = format || fallback;
  if (!FORMATS.includes(f)) throw bad(field, `${JSON.stringify(format)} is not raw or qcow2`);
  return f;
}

function snapshotOf(id: string, snapshot: SnapshotRecord | undefined): SnapshotRecord {
  if (!id) throw bad("snapshot_id", "is required");
  if (!snapshot)
    throw new CairnError("not-found", `snapshot_id: snapshot ${id} is not in the index`, {
      hint: "see `cairn snapshots list`",
    });
  return snapshot;
}

/** The disk targets a snapshot holds (its catalog record names one kind per disk). */
function targetsOf(s: SnapshotRecord): string[] {
  return Object.keys(s.kinds).sort();
}

/**
 * Validates a RestoreDisk request against the catalog, before any job exists (docs/restore.md §2);
 * returns it with defaults filled in. Each refusal names the field.
 */
export function checkRestoreDisk(
  req: CoordinatorServiceRestoreDiskRequest,
  snapshot: SnapshotRecord | undefined,
): CoordinatorServiceRestoreDiskRequest {
  const s = snapshotOf(req.snapshotId, snapshot);
  if (!req.diskTarget) throw bad("disk_target", `is required (one of ${targetsOf(s).join(", ")})`);
  if (!targetsOf(s).includes(req.diskTarget))
    throw new CairnError(
      "not-found",
      `disk_target: snapshot ${s.id} has no disk ${req.diskTarget} (it has ${targetsOf(s).join(", ")})`,
    );
  checkPath("destination", req.destination);
  return { ...req, format: checkFormat("format", req.format, "raw") };
}

/** Validates a RestoreVm request (docs/restore.md §3); returns it with defaults filled in. */
export function checkRestoreVm(
  req: CoordinatorServiceRestoreVmRequest,
  snapshot: SnapshotRecord | undefined,
): CoordinatorServiceRestoreVmRequest {
  snapshotOf(req.snapshotId, snapshot);
  const format = checkFormat("format", req.format, "qcow2");
  if (req.inPlace) {
    const given = [
      req.newName && "new_name",
      req.destinationDir && "destination_dir",
      req.pool && "pool",
    ].filter(Boolean);
    if (given.length)
      throw bad(
        "in_place",
        `excludes ${given.join(", ")}: an in-place restore writes the original's disks where they are`,
      );
    return { ...req, format };
  }
  if (req.newName && !LIBVIRT_NAME.test(req.newName))
    throw bad(
      "new_name",
      `${JSON.stringify(req.newName)} is not a valid domain name (${LIBVIRT_NAME.source})`,
    );
  if (req.destinationDir && req.pool)
    throw bad("pool", "excludes destination_dir: the disks go to a directory or to a pool, not both");
  if (req.destinationDir) checkPath("destination_dir", req.destinationDir);
  if (req.pool && !LIBVIRT_NAME.test(req.pool))
    throw bad("pool", `${JSON.stringify(req.pool)} is not a valid storage pool name`);
  return { ...req, format };
}
