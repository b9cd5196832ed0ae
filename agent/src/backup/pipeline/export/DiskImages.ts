import { bitmapOps, createQcow2, type ImageInfo, imageInfo } from "../../../image/qemuImg.js";
import { virtualSize } from "../../../image/virtualSize.js";

/** Port: what the export stage does to disk images (qemu-img here; in memory in unit tests). */
export interface DiskImages {
  virtualSize(path: string, format: string, signal: AbortSignal): Promise<number>;
  /** An empty qcow2 of `size` bytes (a pull backup's scratch image). */
  createQcow2(path: string, size: number, signal: AbortSignal): Promise<void>;
  /** Without -U: fails on an image another process holds (deferred "moved"), before anything changes. */
  info(path: string, signal: AbortSignal): Promise<ImageInfo>;
  /** One `qemu-img bitmap` call, e.g. ["--add", "--merge", "a"] makes `name` the union of a. */
  bitmap(path: string, name: string, ops: readonly string[], signal: AbortSignal): Promise<void>;
}

export const qemuImgImages: DiskImages = {
  virtualSize,
  createQcow2,
  info: (path, signal) => imageInfo(path, signal),
  bitmap: bitmapOps,
};
