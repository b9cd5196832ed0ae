import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { cairnCli, coordinatorArgs } from "../../support/cairnCli.js";
import type { TestCoordinator } from "../../support/coordinatorHarness.js";

/**
 * Restores one disk of a snapshot with `cairn restore disk` (a job through the coordinator) into
 * this test's directory; its sha256. `host` writes it (default: the VM's host); it must share this
 * process's mount namespace and reach the repository.
 */
export async function restoredDiskHash(
  c: TestCoordinator,
  snapshotId: string,
  target: string,
  host?: string,
): Promise<string> {
  const out = join(c.dir, `${target}-${snapshotId}.raw`);
  const r = await cairnCli([
    "restore",
    "disk",
    snapshotId,
    target,
    "--to",
    out,
    ...(host ? ["--host", host] : []),
    ...coordinatorArgs(c),
  ]);
  if (r.exitCode !== 0) throw new Error(`restore failed: ${r.stderr}`);
  try {
    const h = createHash("sha256");
    for await (const x of createReadStream(out)) h.update(x as Buffer);
    return h.digest("hex");
  } finally {
    await rm(out, { force: true });
  }
}
