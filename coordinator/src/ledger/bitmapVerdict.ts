import type { LedgerEntry } from "../store/records.js";

export interface LiveBitmap {
  target: string;
  name: string;
  recording: boolean;
  inconsistent: boolean;
}

/**
 * Whether an entry's bitmap survived in the running QEMU (for checkpoints libvirt already had on
 * the host, which RedefineCheckpoints does not judge). Pure. Undefined when it did; otherwise why not.
 */
export function bitmapVerdict(e: LedgerEntry, bitmaps: readonly LiveBitmap[]): string | undefined {
  const b = bitmaps.find((x) => x.target === e.target && x.name === e.bitmap);
  if (!b) return `bitmap ${e.bitmap} of ${e.target} is missing in the running QEMU`;
  if (b.inconsistent)
    return `bitmap ${e.bitmap} of ${e.target} is inconsistent (QEMU stopped without saving it)`;
  return undefined;
}
