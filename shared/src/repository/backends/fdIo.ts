import fs from "node:fs";

/*
 * Thin promise wrappers over the callback fs API with plain numeric fds. The promise API's
 * FileHandle objects cost ~0.3 ms each on the main thread (object, finalizer, GC): at thousands
 * of chunk files per backup that was the repository's bottleneck, not hashing or compression.
 */

export function openFd(path: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(path, flags, mode, (e, fd) => (e ? reject(e) : resolve(fd))),
  );
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));
}

export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve())));
}

export function ftruncateFd(fd: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, length, (e) => (e ? reject(e) : resolve())));
}

export function fstatFd(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (e, s) => (e ? reject(e) : resolve(s))));
}

/** Writes all of `data` at `position`. */
export async function writeAll(fd: number, data: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await new Promise<number>((resolve, reject) =>
      fs.write(fd, data, off, data.length - off, position + off, (e, w) => (e ? reject(e) : resolve(w))),
    );
    off += n;
  }
}

/** Reads up to buf.length bytes at `position`; returns how many (fewer only at end of file). */
export async function readAll(fd: number, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await new Promise<number>((resolve, reject) =>
      fs.read(fd, buf, got, buf.length - got, position + got, (e, r) => (e ? reject(e) : resolve(r))),
    );
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** stat that resolves undefined for a missing path (ENOENT/ENOTDIR) and the error for anything else. */
export function statOrMissing(path: string): Promise<fs.Stats | undefined | Error> {
  return new Promise((resolve) =>
    fs.stat(path, (e, s) => resolve(e ? (e.code === "ENOENT" || e.code === "ENOTDIR" ? undefined : e) : s)),
  );
}

/** Writes the parts one after another from `position`, in as few writev calls as the kernel allows. */
export async function writevAll(fd: number, parts: readonly Uint8Array[], position: number): Promise<void> {
  const IOV_MAX = 1024;
  let i = 0;
  let skip = 0;
  let pos = position;
  for (;;) {
    while (i < parts.length && parts[i]!.length - skip === 0) {
      i++;
      skip = 0;
    }
    if (i >= parts.length) return;
    const batch = parts.slice(i, i + IOV_MAX).map((p, k) => (k === 0 && skip > 0 ? p.subarray(skip) : p));
    const n = await new Promise<number>((resolve, reject) =>
      fs.writev(fd, batch as NodeJS.ArrayBufferView[], pos, (e, w) => (e ? reject(e) : resolve(w))),
    );
    if (n === 0) throw new Error("writev wrote nothing");
    pos += n;
    let left = n;
    while (left > 0) {
      const rest = parts[i]!.length - skip;
      if (left >= rest) {
        left -= rest;
        i++;
        skip = 0;
      } else {
        skip += left;
        left = 0;
      }
    }
  }
}
