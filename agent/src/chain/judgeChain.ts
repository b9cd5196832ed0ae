import type { LiveBitmap } from "../hypervisor/Hypervisor.js";
import { bitmapProblem } from "./bitmapProblem.js";

/** Whether one disk's chain through one checkpoint survived (a migration, a restart elsewhere). */
export interface DiskChainVerdict {
  checkpoint: string;
  target: string;
  kept: boolean;
  /** Why not, in plain words; "" when kept. */
  reason: string;
}

/**
 * Per (checkpoint, disk): kept when libvirt took the checkpoint back tracking that disk and the
 * running QEMU has its bitmap, consistent and recording (libvirt 9.0 refuses an incremental from
 * any other), otherwise not kept with the reason. Pure: the caller redefined and asked QEMU.
 */
export function judgeChain(input: {
  /** Oldest first, with the bitmaps each checkpoint's XML names (target → bitmap). */
  checkpoints: readonly { name: string; bitmaps: Readonly<Record<string, string>> }[];
  /** Checkpoints libvirt refused to redefine, with its message. */
  refused: ReadonlyMap<string, string>;
  /**
   * Disks a checkpoint was defined without (target → why), though its XML names them: libvirt
   * does not track them, so they are not kept whatever QEMU says now.
   */
  untracked?: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /** The running QEMU's bitmaps per disk target. */
  live: ReadonlyMap<string, readonly LiveBitmap[]>;
}): DiskChainVerdict[] {
  const out: DiskChainVerdict[] = [];
  for (const c of input.checkpoints) {
    for (const [target, bitmap] of Object.entries(c.bitmaps)) {
      const verdict = (reason: string) => out.push({ checkpoint: c.name, target, kept: !reason, reason });
      const refusal = input.refused.get(c.name);
      const left = input.untracked?.get(c.name)?.get(target);
      if (refusal !== undefined) verdict(`libvirt refused to redefine checkpoint ${c.name}: ${refusal}`);
      else if (left !== undefined)
        verdict(left || `checkpoint ${c.name} on this host does not track ${target}`);
      else verdict(bitmapProblem(target, bitmap, input.live));
    }
  }
  return out;
}
