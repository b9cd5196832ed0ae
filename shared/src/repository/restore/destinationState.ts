import type { Stats } from "node:fs";
import { lstat } from "node:fs/promises";
import type { DestinationState } from "./planRestoreTarget.js";
import { restoreIoError } from "./restoreIoError.js";

/** What is at `path`, without following a symlink there. */
export async function destinationState(path: string): Promise<DestinationState> {
  try {
    return destinationStateOf(await lstat(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw restoreIoError(e, path, "inspecting restore destination");
  }
}

/** The state an lstat result (undefined: nothing there) describes. */
export function destinationStateOf(st: Stats | undefined): DestinationState {
  if (!st) return "missing";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFile()) return "file";
  return st.isBlockDevice() ? "block-device" : "other";
}
