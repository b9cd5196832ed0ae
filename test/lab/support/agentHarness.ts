import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { inject } from "vitest";
import type { BackupConfig, BackupDeps } from "../../../agent/src/backup/BackupRequest.js";
import { FreezeMarkers } from "../../../agent/src/guest/FreezeMarkers.js";
import { VirshGuestAgent } from "../../../agent/src/guest/VirshGuestAgent.js";
import { VirshHypervisor } from "../../../agent/src/hypervisor/VirshHypervisor.js";
import { VirshSessionPool } from "../../../agent/src/hypervisor/VirshSessionPool.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { restoreDisk } from "../../../shared/src/repository/restore/restoreDisk.js";
import type { LabHost } from "./LabHost.js";
import { run } from "./run.js";

/** The agent's backup dependencies wired to the lab's real libvirt, qemu-ga and a local repository. */
export async function agentHarness(host: LabHost, opts: { chunkSize?: number; runRoot?: string } = {}) {
  const root = join(opts.runRoot ?? inject("cairnLab").runRoot, "tmp");
  await mkdir(root, { recursive: true });
  const dir = await mkdtemp(join(root, "agent-"));
  await chmod(dir, 0o711); // as /var/lib/cairn-agent would be

  const ids = async (what: string, name: string) =>
    Number.parseInt((await run("getent", [what, name])).stdout.split(":")[2] ?? "", 10);
  const repository = await Repository.init(new LocalObjectStore(join(dir, "repo")), {
    ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
  });
  // As in the agent: virsh calls go through a pool of warm sessions.
  const pool = new VirshSessionPool(host.uri);
  const deps: BackupDeps = {
    hypervisor: new VirshHypervisor({ uri: host.uri, callTimeoutMs: 60_000, runner: pool.run }),
    guestAgent: new VirshGuestAgent({ uri: host.uri, runner: pool.run }),
    freezeMarkers: new FreezeMarkers(join(dir, "state", "frozen")),
    repository,
    log: createLogger("agent-test", process.env.CAIRN_TEST_LOG ?? "silent"),
  };
  const config: BackupConfig = {
    workDir: join(dir, "work"),
    qemuUid: await ids("passwd", "libvirt-qemu"),
    qemuGid: await ids("group", "kvm"),
    freezeTimeoutMs: 10_000,
    thawTimeoutMs: 10_000,
    maxFrozenMs: 30_000,
    guestPingTimeoutMs: 5_000,
    hookTimeoutMs: 30_000,
    nbdRequestSize: 1024 * 1024, // the agent's default
    nbdDepth: 16,
  };
  /** Writes one disk of a snapshot to a raw file in the harness dir; returns its path. */
  const materialize = async (snapshotId: string, target: string, repo: Repository = repository) => {
    const path = join(dir, `${snapshotId}-${target}.raw`);
    await restoreDisk(await repo.openDisk(snapshotId, target), path, { format: "raw" });
    return path;
  };
  return {
    dir,
    deps,
    config,
    repository,
    pool,
    materialize,
    /** sha256 of one disk of a snapshot, restored from the repository. */
    async restoredHash(snapshotId: string, target: string, repo: Repository = repository): Promise<string> {
      const path = await materialize(snapshotId, target, repo);
      try {
        return createHash("sha256")
          .update(await readFile(path))
          .digest("hex");
      } finally {
        await rm(path, { force: true });
      }
    },
    async dispose() {
      pool.close();
      await repository.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
