import { BlockDeviceTarget } from "./BlockDeviceTarget.js";
import type { RestoreTargetPlan } from "./planRestoreTarget.js";
import { Qcow2FileTarget, type Qcow2Options } from "./Qcow2FileTarget.js";
import { RawFileTarget } from "./RawFileTarget.js";
import type { RestoreTarget } from "./RestoreTarget.js";

/** Opens the target planRestoreTarget chose for a disk of `size` bytes. */
export function openRestoreTarget(
  path: string,
  plan: RestoreTargetPlan,
  size: number,
  signal: AbortSignal,
  qcow2: Qcow2Options = {},
): Promise<RestoreTarget> {
  if (plan.kind === "block-device") return BlockDeviceTarget.open(path, size);
  return plan.format === "qcow2"
    ? Qcow2FileTarget.create(path, plan.kind, size, signal, qcow2)
    : RawFileTarget.create(path, plan.kind, size);
}
