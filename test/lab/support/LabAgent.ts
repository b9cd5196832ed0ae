import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import type { TestCoordinator } from "../../support/coordinatorHarness.js";
import { REPO_ROOT } from "./labPaths.js";

/**
 * A real cairn-agent daemon (from source) enrolled with a test coordinator under `hostId`: its
 * own state directory under the coordinator's, mutual TLS, and `env` for what the agent reads from
 * its environment (S3 credentials). start() waits for "listening"; kill() is kill -9.
 */
export class LabAgent {
  private proc: ResultPromise | undefined;
  metricsPort = 0;
  readonly dir: string;

  private constructor(
    readonly hostId: string,
    c: TestCoordinator,
    private readonly env: Record<string, string>,
    /** Runs the daemon under this prefix (e.g. `ip netns exec NS`, `nsenter --mount --target PID --`). */
    private readonly launch: readonly string[],
  ) {
    this.dir = join(c.dir, `agent-${hostId}`);
  }

  static async enroll(
    c: TestCoordinator,
    hostId: string,
    env: Record<string, string> = {},
    /** The libvirt this agent manages (the lab's second host has its own). */
    libvirtUri?: string,
    opts: {
      launch?: readonly string[];
      /** Extra top-level YAML for the agent's config (roles, transfer, …). */
      extraConfig?: string;
      /** The coordinator address as this agent dials it (default c.address). */
      coordinatorAddress?: string;
      /** The agent's gRPC listen address (default 127.0.0.1:0). */
      listen?: string;
    } = {},
  ): Promise<LabAgent> {
    const a = new LabAgent(hostId, c, env, opts.launch ?? []);
    await mkdir(a.dir, { recursive: true });
    // libvirt's QEMU (another user) opens scratch files under the agent's state directory.
    await chmod(c.dir, 0o711);
    await chmod(a.dir, 0o711);
    await writeFile(
      a.config,
      `stateDir: ${a.dir}\nlisten: "${opts.listen ?? "127.0.0.1:0"}"\nmetricsListen: "127.0.0.1:0"\nlogLevel: ${process.env.CAIRN_TEST_LOG ?? "warn"}\ncoordinator:\n  address: "${opts.coordinatorAddress ?? c.address}"\n  inventoryPollSeconds: 1\n${libvirtUri ? `libvirtUri: "${libvirtUri}"\n` : ""}${opts.extraConfig ?? ""}`,
    );
    const r = await execa(
      "node",
      [
        "--import",
        "tsx",
        join(REPO_ROOT, "agent/src/main.ts"),
        "enroll",
        "--config",
        a.config,
        "--token",
        await c.enrollToken(hostId),
        "--ca-file",
        c.caFile,
        "--hostname",
        hostId,
      ],
      { cwd: REPO_ROOT },
    );
    if (!r.stdout.includes(`enrolled as host ${hostId}`)) throw new Error(`enroll failed: ${r.stdout}`);
    return a;
  }

  get config(): string {
    return join(this.dir, "agent.yaml");
  }

  async start(): Promise<void> {
    const [cmd, ...prefix] = [...this.launch, "node"];
    const proc = execa(
      cmd as string,
      [...prefix, "--import", "tsx", join(REPO_ROOT, "agent/src/main.ts"), "--config", this.config],
      {
        cwd: REPO_ROOT,
        reject: false,
        env: this.env,
        stderr: process.env.CAIRN_TEST_LOG ? "inherit" : "ignore",
      },
    );
    this.proc = proc;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("agent did not start within 60 s")), 60_000);
      proc.stdout?.on("data", (b: Buffer) => {
        const line = b.toString();
        if (line.includes("listening on port")) {
          this.metricsPort = Number(/metrics on port (\d+)/.exec(line)?.[1] ?? 0);
          clearTimeout(t);
          resolve();
        }
      });
      void proc.then((r) => reject(new Error(`agent exited ${r.exitCode}`)));
    });
  }

  /** The daemon's process id (undefined before start). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** kill -9, and waits for the process to be gone. */
  async kill(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.proc;
  }
}
