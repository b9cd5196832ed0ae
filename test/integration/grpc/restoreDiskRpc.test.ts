import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, createClient, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobRegistry } from "../../../agent/src/jobs/JobRegistry.js";
import { type RunningAgentServer, startAgentServer } from "../../../agent/src/server/startAgentServer.js";
import { AgentServiceDefinition, type RestoreDiskResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import { createLogger } from "../../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { slowedStore } from "../../support/slowedStore.js";

// AgentService.RestoreDisk over real gRPC, into real files, from a real local repository. The
// agent has no hypervisor: a disk restore needs only the repository and the destination.
const CS = 64 * 1024;
const CHUNKS = 256;
const disk = Buffer.alloc(CHUNKS * CS);
randomBytes(CHUNKS * CS - 4 * CS).copy(disk, 2 * CS); // zero runs at both ends
let dir: string;
let snapshotId: string;
let agent: RunningAgentServer;
/** Milliseconds every object read waits (the abort test slows the repository down). */
let readDelayMs = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "cairn-restore-rpc-"));
  const repo = await Repository.init(new LocalObjectStore(join(dir, "repo")), { chunkSize: CS, workers: 1 });
  const w = await repo.beginSnapshot({ vm: { uuid: "0b7e1c3a-1111-2222-3333-444455556666", name: "n" } });
  const d = await w.addDisk({ target: "vda", virtualSize: disk.length, sourceFormat: "qcow2", kind: "full" });
  await d.write(0, disk);
  await d.finish();
  snapshotId = (await w.seal({ domainXml: "<domain/>", consistency: { kind: "quiesced" } })).id;
  await repo.close();
  const jobs = new JobRegistry();
  agent = await startAgentServer(
    { listen: "127.0.0.1:0" },
    {
      hostId: "h",
      libvirtUri: "test:///none",
      maintenance: {
        jobs,
        openRepository: (location) =>
          Repository.open(slowedStore(new LocalObjectStore(location), () => readDelayMs)),
      },
    },
    createLogger("test", "silent"),
  );
});
afterAll(async () => {
  await agent?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const client = () => createClient(AgentServiceDefinition, createChannel(`127.0.0.1:${agent.port}`));
const request = (jobId: string, destination: string, over: Record<string, unknown> = {}) => ({
  repository: join(dir, "repo"),
  snapshotId,
  diskTarget: "vda",
  destination,
  format: "raw",
  overwrite: false,
  jobId,
  ...over,
});
async function drain(stream: AsyncIterable<RestoreDiskResponse>): Promise<RestoreDiskResponse[]> {
  const events: RestoreDiskResponse[] = [];
  for await (const e of stream) events.push(e);
  return events;
}

describe("AgentService.RestoreDisk", () => {
  it("writes the disk to a new file, streaming progress then the result; the finished id answers its result", async () => {
    const out = join(await mkdtemp(join(dir, "ok-")), "vda.raw");
    const events = await drain(client().restoreDisk(request("restore-ok-1", out)));
    const progress = events.filter((e) => e.event?.$case === "progress").map((e) => e.event?.value);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)).toMatchObject({
      bytesDone: BigInt(disk.length),
      bytesTotal: BigInt(disk.length),
      phase: "write",
    });
    const last = events.at(-1);
    expect(last?.event).toEqual({
      $case: "result",
      value: {
        destination: out,
        format: "raw",
        targetKind: "file",
        bytesWritten: BigInt(CHUNKS * CS - 4 * CS),
        bytesZeroed: 0n,
      },
    });
    expect((await readFile(out)).equals(disk)).toBe(true);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    // Sent again (a coordinator retrying after a lost stream): the recorded result, nothing rewritten.
    const again = await drain(client().restoreDisk(request("restore-ok-1", out)));
    expect(again).toEqual([last]);
  });

  it("qcow2 to a new file; an existing file is refused without overwrite", async () => {
    const d = await mkdtemp(join(dir, "q-"));
    const out = join(d, "vda.qcow2");
    const events = await drain(client().restoreDisk(request("restore-q-1", out, { format: "qcow2" })));
    expect(events.at(-1)?.event).toMatchObject({
      $case: "result",
      value: { format: "qcow2", targetKind: "file" },
    });
    await expect(
      drain(client().restoreDisk(request("restore-q-2", out, { format: "qcow2" }))),
    ).rejects.toMatchObject({
      code: Status.ALREADY_EXISTS,
    });
  });

  it("AbortJob while it writes: the stream ends cancelled and the new file is gone", async () => {
    readDelayMs = 40;
    try {
      const d = await mkdtemp(join(dir, "abort-"));
      const out = join(d, "vda.raw");
      const stream = client().restoreDisk(request("restore-abort-1", out));
      const seen: RestoreDiskResponse[] = [];
      const ended = (async () => {
        for await (const e of stream) {
          seen.push(e);
          if (e.event?.$case === "progress" && e.event.value.phase === "write") {
            expect((await client().abortJob({ jobId: "restore-abort-1", reason: "test" })).found).toBe(true);
          }
        }
      })();
      await expect(ended).rejects.toMatchObject({ code: Status.CANCELLED });
      expect(seen.some((e) => e.event?.$case === "result")).toBe(false);
      expect(await readdir(d)).toEqual([]);
    } finally {
      readDelayMs = 0;
    }
  });

  it("a second call with a running job id attaches to it instead of writing twice", async () => {
    readDelayMs = 10;
    try {
      const out = join(await mkdtemp(join(dir, "attach-")), "vda.raw");
      const [a, b] = await Promise.all([
        drain(client().restoreDisk(request("restore-attach-1", out))),
        new Promise((r) => setTimeout(r, 100)).then(() =>
          drain(client().restoreDisk(request("restore-attach-1", out))),
        ),
      ]);
      expect(a.at(-1)?.event?.$case).toBe("result");
      expect(b.at(-1)).toEqual(a.at(-1));
      expect((await readFile(out)).equals(disk)).toBe(true);
    } finally {
      readDelayMs = 0;
    }
  });

  it.each([
    [{ jobId: "../x" }, /job_id/],
    [{ snapshotId: "../../etc" }, /snapshot_id/],
    [{ diskTarget: "vda/../x" }, /disk_target/],
    [{ destination: "relative.raw" }, /absolute/],
  ])("refuses %j before anything runs", async (over, message) => {
    await expect(
      drain(client().restoreDisk({ ...request("restore-bad-1", "/tmp/x"), ...over })),
    ).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringMatching(message),
    });
  });
});
