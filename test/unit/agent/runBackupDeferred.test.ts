import { describe, expect, it } from "vitest";
import type { BackupConfig } from "../../../agent/src/backup/BackupRequest.js";
import { JobRegistry } from "../../../agent/src/jobs/JobRegistry.js";
import { type BackupRpcDeps, runBackupRpc } from "../../../agent/src/server/runBackupRpc.js";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { RunBackupRequest, type RunBackupResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { FakeGuestAgent } from "../../support/fakes/FakeGuestAgent.js";
import { FakeHypervisor, sampleDomain } from "../../support/fakes/FakeHypervisor.js";

async function ask(hv: FakeHypervisor, domainUuid: string): Promise<RunBackupResponse[]> {
  const store = new MemoryObjectStore();
  await (await Repository.init(store, { chunkSize: 65536, workers: 1 })).close();
  const deps = {
    jobs: new JobRegistry(),
    openRepository: () => Repository.open(store, { workers: 1 }),
    backup: {
      hypervisor: hv,
      guestAgent: new FakeGuestAgent(),
      freezeMarkers: undefined,
      log: createLogger("t", "silent"),
    },
    config: { workDir: "/nonexistent" } as BackupConfig,
  } as unknown as BackupRpcDeps;
  const req = RunBackupRequest.fromPartial({
    jobId: "j-1",
    domainUuid,
    repository: "mem",
    mode: BackupMode.BACKUP_MODE_AUTO,
  });
  const out: RunBackupResponse[] = [];
  for await (const ev of runBackupRpc(deps, req, { signal: new AbortController().signal } as never))
    out.push(ev);
  return out;
}

describe("RunBackup answers deferred instead of failing, and changes nothing", () => {
  it("when the domain is not on this host: moved", async () => {
    const hv = new FakeHypervisor([sampleDomain]);
    const events = await ask(hv, "00000000-0000-4000-8000-000000000000");
    expect(events.at(-1)?.event).toMatchObject({ $case: "deferred", value: { cause: "moved" } });
  });

  it("when a migration holds the domain: migrating", async () => {
    const hv = new FakeHypervisor([structuredClone(sampleDomain)]);
    hv.jobs.set(sampleDomain.name, "migration");
    const events = await ask(hv, sampleDomain.uuid);
    const last = events.at(-1)?.event;
    expect(last).toMatchObject({ $case: "deferred", value: { cause: "migrating" } });
    expect(last?.$case === "deferred" && last.value.reason).toMatch(/is being migrated/);
    expect(await hv.listCheckpoints(sampleDomain.name, new AbortController().signal)).toEqual([]);
    expect(events.some((e) => e.event?.$case === "checkpointPending")).toBe(false);
  });

  it("when the backup path throws a CairnError with details.deferred (an image locked by another host's QEMU)", async () => {
    const hv = new FakeHypervisor([structuredClone(sampleDomain)]);
    hv.listCheckpoints = async () => {
      throw new CairnError("failed-precondition", "image vda is locked by another QEMU", {
        details: { deferred: "moved" },
      });
    };
    const events = await ask(hv, sampleDomain.uuid);
    expect(events.at(-1)?.event).toMatchObject({
      $case: "deferred",
      value: { cause: "moved", reason: "image vda is locked by another QEMU" },
    });
  });

  it("any other error is still a failure", async () => {
    const hv = new FakeHypervisor([structuredClone(sampleDomain)]);
    hv.listCheckpoints = async () => {
      throw new CairnError("failed-precondition", "something else");
    };
    await expect(ask(hv, sampleDomain.uuid)).rejects.toThrow(/something else/);
  });
});
