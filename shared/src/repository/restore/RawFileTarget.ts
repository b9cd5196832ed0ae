import { closeFd, fsyncFd, ftruncateFd, writeAll } from "../backends/fdIo.js";
import { createRestoreFile, type RestoreFile } from "./createRestoreFile.js";
import type { RestoreTarget } from "./RestoreTarget.js";
import { restoreIoError } from "./restoreIoError.js";

/** A sparse raw file: sized with ftruncate (holes everywhere), then only data chunks are written. */
export class RawFileTarget implements RestoreTarget {
  private constructor(
    private readonly file: RestoreFile,
    private readonly fd: number,
  ) {}

  get path(): string {
    return this.file.path;
  }
  get kind(): "new-file" | "replace-file" {
    return this.file.kind;
  }

  static async create(path: string, kind: "new-file" | "replace-file", size: number): Promise<RawFileTarget> {
    const file = await createRestoreFile(path, kind);
    try {
      await ftruncateFd(file.fd, size);
    } catch (e) {
      await closeFd(file.fd).catch(() => {});
      await file.remove();
      throw restoreIoError(e, path, "sizing");
    }
    return new RawFileTarget(file, file.fd);
  }

  async writeData(offset: number, data: Buffer): Promise<void> {
    await writeAll(this.fd, data, offset).catch((e: unknown) => {
      throw restoreIoError(e, this.path, "writing");
    });
  }

  async ensureZero(): Promise<number> {
    return 0; // a hole of the new file
  }

  async commit(): Promise<void> {
    try {
      await fsyncFd(this.fd);
    } catch (e) {
      throw restoreIoError(e, this.path, "syncing");
    } finally {
      await closeFd(this.fd).catch(() => {});
    }
    await this.file.publish();
  }

  async discard(): Promise<void> {
    await closeFd(this.fd).catch(() => {});
    await this.file.remove();
  }
}
