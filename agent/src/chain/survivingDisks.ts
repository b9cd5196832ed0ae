import type { LiveBitmap } from "../hypervisor/Hypervisor.js";
import { bitmapProblem } from "./bitmapProblem.js";

/**
 * Splits one checkpoint's disks by whether the running QEMU still has their bitmap sound: the
 * ones a validated redefinition can keep, and the others with the reason. Pure.
 */
export function survivingDisks(
  bitmaps: Readonly<Record<string, string>>,
  live: ReadonlyMap<string, readonly LiveBitmap[]>,
): { kept: string[]; dropped: Map<string, string> } {
  const kept: string[] = [];
  const dropped = new Map<string, string>();
  for (const [target, bitmap] of Object.entries(bitmaps)) {
    const problem = bitmapProblem(target, bitmap, live);
    if (problem) dropped.set(target, problem);
    else kept.push(target);
  }
  return { kept, dropped };
}
