import type { LiveBitmap } from "../hypervisor/Hypervisor.js";

/** Whether one disk's chain through one checkpoint survived (a migration, a restart elsewhere). */
export interface DiskChainVerdict {
  checkpoint: string;
  target: string;
  kept: boolean;
  /** Why not, in plain words; "" when kept. */
  reason: string;
}

/**
 * Per (checkpoint, disk): kept when libvirt took the checkpoint back and the running QEMU has its
 * bitmap, consistent and recording (libvirt 9.0 refuses an incremental from any other), otherwise
 * not kept with the reason. Pure: the caller redefined and asked QEMU.
 */
export function judgeChain(input: {
  /** Oldest first, with the bitmaps each checkpoint's XML names (target → bitmap). */
  checkpoints: readonly { name: string; bitmaps: Readonly<Record<string, string>> }[];
  /** Checkpoints libvirt refused to redefine, with its message. */
  refused: ReadonlyMap<string, string>;
  /** The running QEMU's bitmaps per disk target. */
  live: ReadonlyMap<string, readonly LiveBitmap[]>;
}): DiskChainVerdict[] {
  const out: DiskChainVerdict[] = [];
  for (const c of input.checkpoints) {
    for (const [target, bitmap] of Object.entries(c.bitmaps)) {
      const verdict = (reason: string) => out.push({ checkpoint: c.name, target, kept: !reason, reason });
      const refusal = input.refused.get(c.name);
      const b = input.live.get(target)?.find((x) => x.name === bitmap);
      if (refusal !== undefined) verdict(`libvirt refused to redefine checkpoint ${c.name}: ${refusal}`);
      else if (!b)
        verdict(
          `bitmap ${bitmap} of ${target} is missing in the running QEMU: the image was copied or replaced without its bitmaps`,
        );
      else if (b.inconsistent)
        verdict(
          `bitmap ${bitmap} of ${target} is inconsistent in the running QEMU: QEMU stopped without saving it`,
        );
      else if (b.recording === false)
        verdict(`bitmap ${bitmap} of ${target} is not recording: writes since then were not tracked`);
      else verdict("");
    }
  }
  return out;
}
