import { constants } from "node:fs";
import { readFile } from "node:fs/promises";
import { CairnError } from "../../errors/CairnError.js";
import { closeFd, fstatFd, fsyncFd, openFd, readAll, writeAll } from "../backends/fdIo.js";
import type { RestoreTarget } from "./RestoreTarget.js";
import { restoreIoError } from "./restoreIoError.js";

/** Zero runs are compared (and, where not zero, rewritten) in pieces of this size. */
const ZERO_PIECE = 1024 * 1024;
const ZEROS = Buffer.alloc(ZERO_PIECE);

/**
 * A block device written in place: opened without O_CREAT/O_TRUNC and never truncated. Runs the
 * restore point has as zeros are read back first and written only where the device is not zero
 * already: a read costs no wear and allocates nothing on thin storage (LVM thin, SAN), while
 * rewriting zeros over a pre-zeroed device would. BLKZEROOUT/discard would avoid the read but need
 * an ioctl Node does not have, and discard only guarantees zeros on some devices.
 */
export class BlockDeviceTarget implements RestoreTarget {
  readonly kind = "block-device" as const;

  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  /**
   * O_EXCL on a block device (without O_CREAT) claims it exclusively: a mounted device, or one
   * another process claimed, fails with EBUSY instead of being written under its user's feet.
   */
  static async open(path: string, diskSize: number): Promise<BlockDeviceTarget> {
    const fd = await openFd(path, constants.O_RDWR | constants.O_EXCL | constants.O_NOFOLLOW).catch(
      (e: unknown) => {
        throw restoreIoError(e, path, "opening");
      },
    );
    try {
      const st = await fstatFd(fd);
      if (!st.isBlockDevice())
        throw new CairnError("invalid-argument", `${path} is no longer a block device`, {
          hint: "something replaced it while the restore started; check it and retry",
        });
      const size = await blockDeviceSize(st.rdev, path);
      if (size < diskSize)
        throw new CairnError(
          "failed-precondition",
          `block device ${path} holds ${size} bytes, less than the disk's ${diskSize}`,
          { hint: "restore to a device at least as large as the disk's virtual size" },
        );
      return new BlockDeviceTarget(path, fd);
    } catch (e) {
      await closeFd(fd).catch(() => {});
      throw restoreIoError(e, path, "opening");
    }
  }

  async writeData(offset: number, data: Buffer): Promise<void> {
    await writeAll(this.fd, data, offset).catch((e: unknown) => {
      throw restoreIoError(e, this.path, "writing");
    });
  }

  async ensureZero(offset: number, length: number, signal: AbortSignal): Promise<number> {
    let written = 0;
    const buf = Buffer.allocUnsafe(Math.min(length, ZERO_PIECE));
    for (let at = offset; at < offset + length; ) {
      if (signal.aborted) return written;
      const n = Math.min(ZERO_PIECE, offset + length - at);
      const piece = buf.subarray(0, n);
      try {
        const got = await readAll(this.fd, piece, at);
        if (got < n || !piece.equals(ZEROS.subarray(0, n))) {
          await writeAll(this.fd, ZEROS.subarray(0, n), at);
          written += n;
        }
      } catch (e) {
        throw restoreIoError(e, this.path, "zeroing");
      }
      at += n;
    }
    return written;
  }

  async commit(): Promise<void> {
    try {
      await fsyncFd(this.fd);
    } catch (e) {
      throw restoreIoError(e, this.path, "syncing");
    } finally {
      await closeFd(this.fd).catch(() => {});
    }
  }

  async discard(): Promise<void> {
    await closeFd(this.fd).catch(() => {});
  }
}

/** A block device's size from sysfs, found by the opened device's number (not by its path). */
async function blockDeviceSize(rdev: number, path: string): Promise<number> {
  // Linux dev_t: major in bits 8-19 (and 32+), minor in bits 0-7 and 20-31.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  const at = `/sys/dev/block/${major}:${minor}/size`;
  try {
    const sectors = Number.parseInt(await readFile(at, "utf8"), 10);
    if (!Number.isSafeInteger(sectors)) throw new Error(`unreadable size in ${at}`);
    return sectors * 512; // sysfs counts 512-byte sectors whatever the logical block size
  } catch (e) {
    throw new CairnError("internal", `cannot tell the size of block device ${path} from ${at}`, { cause: e });
  }
}
