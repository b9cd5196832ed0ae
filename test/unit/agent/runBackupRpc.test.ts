import { describe, expect, it } from "vitest";
import { JobRegistry } from "../../../agent/src/jobs/JobRegistry.js";
import { type BackupRpcDeps, runBackupRpc } from "../../../agent/src/server/runBackupRpc.js";
import { RunBackupRequest } from "../../../shared/src/gen/cairn/v1/agent.js";
import { BackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { CountingObjectStore } from "../../support/CountingObjectStore.js";

const mine = { uuid: "aaaaaaaa-0000-0000-0000-000000000001", name: "mine" };
const others = [1, 2, 3, 4].map((i) => ({ uuid: `bbbbbbbb-0000-0000-0000-00000000000${i}`, name: `o${i}` }));

async function seal(r: Repository, vm: { uuid: string; name: string }, jobId: string, legacy = false) {
  const w = await r.beginSnapshot({ vm });
  return w.seal({
    domainXml: "<domain/>",
    consistency: { kind: "quiesced" },
    ...(legacy ? {} : { jobId }),
    extra: { jobId, freezeWindowMs: 7 },
  });
}

describe("runBackupRpc: a job id that already sealed", () => {
  it("is answered from this VM's manifests alone, read once", async () => {
    const store = new CountingObjectStore(new MemoryObjectStore());
    const setup = await Repository.init(store, { chunkSize: 65536, workers: 1 });
    for (const o of others) await seal(setup, o, `job-${o.name}`);
    const done = await seal(setup, mine, "job-1");
    const old = await seal(setup, mine, "job-0", true);
    await setup.close();
    const deps = {
      jobs: new JobRegistry(),
      openRepository: () => Repository.open(store, { workers: 1 }),
    } as unknown as BackupRpcDeps;
    const ask = async (jobId: string) => {
      store.reset();
      const req = RunBackupRequest.fromPartial({
        jobId,
        domainUuid: mine.uuid,
        repository: "mem",
        mode: BackupMode.BACKUP_MODE_AUTO,
      });
      const out = [];
      for await (const ev of runBackupRpc(deps, req, { signal: new AbortController().signal } as never))
        out.push(ev);
      return out;
    };
    const events = await ask("job-1");
    expect(events).toHaveLength(1);
    expect(events[0]!.event).toMatchObject({ $case: "result", value: { snapshotId: done.id, freezeMs: 7 } });
    // Only this VM's two manifests, not the other VMs' four.
    expect(store.getsUnder("snapshots/")).toBe(2);
    // A manifest from before the typed field: found by extra.jobId.
    const legacy = await ask("job-0");
    expect(legacy[0]!.event).toMatchObject({ $case: "result", value: { snapshotId: old.id } });
    expect(store.getsUnder("snapshots/")).toBe(2);
  });
});
