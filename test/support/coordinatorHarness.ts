import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CoordinatorClient, connectCoordinator } from "../../cli/src/connectCoordinator.js";
import { initCoordinatorState } from "../../coordinator/src/bootstrap/initCoordinatorState.js";
import {
  type CoordinatorConfig,
  parseCoordinatorConfig,
} from "../../coordinator/src/config/CoordinatorConfig.js";
import {
  type RunningCoordinator,
  type StartOptions,
  startCoordinator,
} from "../../coordinator/src/startCoordinator.js";
import type { JobRecord } from "../../coordinator/src/store/records.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { LocalObjectStore } from "../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../shared/src/repository/Repository.js";

export interface TestCoordinator {
  dir: string;
  config: CoordinatorConfig;
  running: RunningCoordinator;
  address: string;
  caFile: string;
  adminToken: string;
  repoPath: string;
  admin(token?: string): CoordinatorClient;
  enrollToken(hostId: string): Promise<string>;
  /** Stops and starts again on the same port and state (a clean restart). */
  restart(options?: StartOptions): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * A real coordinator in this process on loopback with its own state dir, CA, bootstrap admin token
 * and one registered local repository "main". Short heartbeat and retry timings for tests.
 */
export async function startTestCoordinator(
  over: Partial<CoordinatorConfig> = {},
  options: StartOptions = {},
  /** Extra addresses in the coordinator's certificate (agents in a network namespace dial one). */
  names: { ipAddresses?: string[] } = {},
): Promise<TestCoordinator> {
  const dir = mkdtempSync(join(tmpdir(), "cairn-coord-"));
  let config: CoordinatorConfig = {
    ...parseCoordinatorConfig("", "test"),
    stateDir: dir,
    listen: "127.0.0.1:0",
    metricsListen: "127.0.0.1:0",
    heartbeatIntervalSeconds: 1,
    lostAfterSeconds: 3,
    schedulerTickMs: 100,
    retryBaseMs: 100,
    retryMaxMs: 500,
    logLevel: "silent",
    ...over,
  };
  const init = await initCoordinatorState(config, { ...names, signal: AbortSignal.timeout(60_000) });
  const log = createLogger("coordinator", process.env.CAIRN_TEST_LOG ?? "silent");
  let running = await startCoordinator(config, log, options);
  config = { ...config, listen: `127.0.0.1:${running.port}` };
  const address = `127.0.0.1:${running.port}`;
  const repoPath = join(dir, "repo");
  await (await Repository.init(new LocalObjectStore(repoPath), { chunkSize: 64 * 1024 })).close();
  const admin = (token = init.adminToken) =>
    connectCoordinator({ coordinator: address, token, caFile: init.caFile });
  await admin().registerRepository({ name: "main", location: repoPath });
  const h: TestCoordinator = {
    dir,
    config,
    get running() {
      return running;
    },
    address,
    caFile: init.caFile,
    adminToken: init.adminToken,
    repoPath,
    admin,
    enrollToken: async (hostId) => (await admin().createEnrollmentToken({ hostId, ttlSeconds: 600 })).token,
    async restart(opts = options) {
      await running.close();
      running = await startCoordinator(config, log, opts);
    },
    async dispose() {
      await running.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** Polls until `fn` returns a truthy value or the timeout passes (then throws with `what`). */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls the coordinator's store until a job has ended (succeeded, failed or cancelled). */
export function waitForJobEnd(c: TestCoordinator, jobId: string, timeoutMs = 240_000): Promise<JobRecord> {
  return eventually(
    `job ${jobId} ends`,
    async () => {
      const j = await c.running.ctx.store.getJob(jobId);
      return j && ["succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
    },
    timeoutMs,
  );
}
