import type { LiveBitmap } from "../hypervisor/Hypervisor.js";

/**
 * Why one disk's checkpoint bitmap cannot drive an incremental in the running QEMU (missing,
 * inconsistent, not recording: libvirt 9.0's --redefine-validate and backup refuse each), or ""
 * when it is sound. Pure.
 */
export function bitmapProblem(
  target: string,
  bitmap: string,
  live: ReadonlyMap<string, readonly LiveBitmap[]>,
): string {
  const b = live.get(target)?.find((x) => x.name === bitmap);
  if (!b)
    return `bitmap ${bitmap} of ${target} is missing in the running QEMU: the image was copied or replaced without its bitmaps`;
  if (b.inconsistent)
    return `bitmap ${bitmap} of ${target} is inconsistent in the running QEMU: QEMU stopped without saving it`;
  // undefined: nobody asked (an adapter reading images); not held against the bitmap
  if (b.recording === false)
    return `bitmap ${bitmap} of ${target} is not recording: writes since then were not tracked`;
  return "";
}
