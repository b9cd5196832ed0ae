import { chmod } from "node:fs/promises";
import { execa } from "execa";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { imageInUseError } from "./imageInUseError.js";

export interface ImageInfo {
  format: string;
  virtualSize: number;
  /** Persistent dirty bitmaps of a qcow2 image; "in-use" means QEMU did not close it cleanly. */
  bitmaps: { name: string; flags: string[] }[];
}

async function qemuImg(
  args: readonly string[],
  what: string,
  image: string,
  signal: AbortSignal,
): Promise<string> {
  const r = await execa("qemu-img", args, {
    cancelSignal: signal,
    timeout: 120_000,
    reject: false,
    env: { LC_ALL: "C" },
  });
  if (r.isCanceled) throw new CairnError("aborted", `qemu-img ${args[0]} was aborted`);
  if (r.failed) {
    const msg = String(r.stderr || r.message).trim();
    const inUse = imageInUseError(image, msg);
    if (inUse) throw inUse;
    throw new CairnError("failed-precondition", `${what} failed: ${msg}`, { cause: r });
  }
  return String(r.stdout);
}

/**
 * `qemu-img info` of an image. `forceShare` reads an image a running QEMU holds (virtual size is
 * reliable then; bitmaps are not: ask QEMU for those).
 */
export async function imageInfo(path: string, signal: AbortSignal, forceShare = false): Promise<ImageInfo> {
  const out = await qemuImg(
    ["info", ...(forceShare ? ["-U"] : []), "--output=json", path],
    `reading ${path}`,
    path,
    signal,
  );
  const j = JSON.parse(out) as {
    format: string;
    "virtual-size": number;
    "format-specific"?: { data?: { bitmaps?: { name: string; flags: string[] }[] } };
  };
  return {
    format: j.format,
    virtualSize: j["virtual-size"],
    bitmaps: j["format-specific"]?.data?.bitmaps ?? [],
  };
}

/** Creates an empty qcow2 image (scratch space for a pull backup's copy-before-write). */
export async function createQcow2(path: string, size: number, signal: AbortSignal): Promise<void> {
  await qemuImg(["create", "-q", "-f", "qcow2", path, String(size)], `creating ${path}`, path, signal);
  // It will hold guest data (a scratch image gets every block the guest overwrites during the
  // backup): readable by its owner only; libvirt gives it to QEMU's user at backup-begin.
  await chmod(path, 0o600);
}

/**
 * One `qemu-img bitmap` call with several operations on bitmap `name`, e.g.
 * ["--add", "--merge", "a", "--merge", "b"] creates `name` as the union of a and b.
 */
export async function bitmapOps(
  path: string,
  name: string,
  ops: readonly string[],
  signal: AbortSignal,
): Promise<void> {
  await qemuImg(
    ["bitmap", ...ops, "-f", "qcow2", path, name],
    `qemu-img bitmap ${ops.join(" ")} ${name} on ${path}`,
    path,
    signal,
  );
}
