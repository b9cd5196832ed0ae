import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";

export interface FreshFilesystem {
  /** Where the new filesystem is mounted. */
  mountpoint: string;
  /** Unmounts it and deletes its image. */
  dispose(): Promise<void>;
}

/**
 * A new ext4 (with its journal: what a repository volume has) on a loop device over a sparse image
 * under `dir`, mounted at `dir/mnt`. The loop device does direct I/O, so nothing is cached twice.
 *
 * Why benchmarks want one: this lab host's root filesystem is ext4 without a journal, where inode
 * allocation skips every inode freed in the last few minutes (ext4 `recently_deleted`). The tests
 * and each bench's teardown free tens of thousands, so a run that creates 8,192 chunk files soon
 * after was up to 2x slower, and nbdcopy's single file barely. A fresh filesystem per run measures
 * the code, not the previous run's deletions; the teardown frees one image file, not 24k inodes.
 */
export async function freshFilesystem(dir: string, sizeBytes: number): Promise<FreshFilesystem> {
  await mkdir(dir, { recursive: true });
  const image = join(dir, "fs.img");
  const mountpoint = join(dir, "mnt");
  await cleanUp(mountpoint, image); // a previous run killed before its teardown
  await mkdir(mountpoint, { recursive: true });
  await execa("truncate", ["--size", String(sizeBytes), image]);
  // Inode tables and journal written now: no lazy-init thread writing beside the measurements.
  await execa("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image]);
  const loop = (await execa("losetup", ["--find", "--show", "--direct-io=on", image])).stdout.trim();
  try {
    await execa("mount", ["-t", "ext4", loop, mountpoint]);
  } catch (e) {
    await execa("losetup", ["--detach", loop]).catch(() => {});
    throw e;
  }
  return { mountpoint, dispose: () => cleanUp(mountpoint, image) };
}

async function cleanUp(mountpoint: string, image: string): Promise<void> {
  const mounted = await execa("findmnt", ["--noheadings", "--output", "SOURCE", mountpoint], {
    reject: false,
  });
  if (mounted.exitCode === 0) await execa("umount", [mountpoint]);
  const loops = await execa("losetup", ["--noheadings", "--output", "NAME", "--associated", image], {
    reject: false,
  });
  for (const l of loops.stdout.split("\n").filter(Boolean)) await execa("losetup", ["--detach", l]);
  await rm(image, { force: true });
}
