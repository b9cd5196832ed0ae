import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { CoordinatorConfig } from "../../../coordinator/src/config/CoordinatorConfig.js";
import type { JobRecord } from "../../../coordinator/src/store/records.js";
import { BackupMode } from "../../../shared/src/gen/cairn/v1/common.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import {
  eventually,
  startTestCoordinator,
  type TestCoordinator,
  waitForJobEnd,
} from "../../support/coordinatorHarness.js";
import { LabAgent } from "./LabAgent.js";
import type { LabHost } from "./LabHost.js";
import { MAIN_HOST } from "./LabHost.js";
import { Lab } from "./lab.js";
import { REPO_ROOT } from "./labPaths.js";
import { readPid } from "./libvirtDaemons.js";
import { NetNs } from "./NetNs.js";
import { run } from "./run.js";

/**
 * The transfer paths' lab (docs/transfer-paths.md): one coordinator and three agents.
 * - kvm-a: the lab's first libvirtd; reaches the repository (LAN-free).
 * - kvm-b: the second libvirtd; its agent runs in that host's own mount namespace, where the
 *   repository's filesystem is not mounted (it was mounted after the namespace was made, and
 *   propagation is private): it cannot reach the repository.
 * - mover-1: a mover-only agent in its own network namespace; every byte it reads from a VM
 *   host's export crosses a veth pair over TCP with TLS.
 * The repository "san" is registered at a bind mount that exists only in the first mount namespace.
 */
export class TransferLab {
  c!: TestCoordinator;
  host2!: LabHost;
  ns!: NetNs;
  a!: LabAgent;
  b!: LabAgent;
  mover!: LabAgent;
  /** Where the repository is mounted (only in the first mount namespace). */
  san!: string;

  constructor(readonly lab = new Lab()) {}

  async start(over: Partial<CoordinatorConfig> = {}): Promise<void> {
    const signal = AbortSignal.timeout(120_000);
    this.ns = await NetNs.create(signal);
    await this.ns.quickack(true, signal);
    // Agents in the namespace dial the coordinator on our end of the veth pair.
    this.c = await startTestCoordinator(
      { listen: "0.0.0.0:0", ...over },
      {},
      { ipAddresses: [this.ns.hostAddress] },
    );
    this.host2 = await this.lab.startSecondHost();
    // The repository's "SAN": a bind mount made now, after the second host's mount namespace.
    const backing = join(this.c.dir, "san-backing");
    this.san = join(this.c.dir, "san");
    await mkdir(backing, { recursive: true });
    await mkdir(this.san, { recursive: true });
    await run("mount", ["--bind", backing, this.san], { signal });
    await (
      await Repository.init(new LocalObjectStore(join(this.san, "repo")), { chunkSize: 256 * 1024 })
    ).close();
    await this.c.admin().registerRepository({ name: "san", location: join(this.san, "repo") });

    const port = Number(this.c.address.split(":").at(-1));
    const transfer = (address: string, tlsDir: string) =>
      `transfer:\n  address: "${address}"\n  libvirtTlsDir: "${tlsDir}"\n`;
    this.a = await LabAgent.enroll(this.c, "kvm-a", {}, undefined, {
      extraConfig: transfer(this.ns.hostAddress, MAIN_HOST.backupTls.dir),
    });
    const libvirtd2 = await readPid(this.host2.backupTls.daemonPidFile);
    if (!libvirtd2) throw new Error("the second libvirtd has no pid");
    this.b = await LabAgent.enroll(this.c, "kvm-b", {}, this.host2.uri, {
      // nsenter leaves the working directory at the namespace's root otherwise (tsx resolves from it).
      launch: ["nsenter", "--mount", `--target=${libvirtd2}`, `--wd=${REPO_ROOT}`, "--"],
      extraConfig: transfer(this.ns.hostAddress, this.host2.backupTls.dir),
    });
    this.mover = await LabAgent.enroll(this.c, "mover-1", {}, undefined, {
      launch: ["ip", "netns", "exec", this.ns.name],
      coordinatorAddress: `${this.ns.hostAddress}:${port}`,
      listen: `${this.ns.address}:0`,
      extraConfig: "roles: [mover]\n",
    });
    await Promise.all([this.a.start(), this.b.start(), this.mover.start()]);
    await eventually(
      "every host probed the repository",
      async () => {
        const r = await this.c.admin().showRepository({ name: "san" });
        return r.reach.length >= 3 ? r : undefined;
      },
      60_000,
    );
  }

  async policy(name: string, vm: string, extra = "", repository = "san"): Promise<void> {
    await this.c.admin().applyPolicy({
      yaml: `name: ${name}\nselector: {names: [${vm}]}\nschedule: {cron: "0 3 * * *"}\nmode: {kind: incremental, fullEvery: 100}\nrepository: ${repository}\n${extra}`,
    });
  }

  /** Another repository on the SAN, registered once kvm-a and the mover have probed it. */
  async sanRepository(name: string): Promise<void> {
    await (
      await Repository.init(new LocalObjectStore(join(this.san, name)), { chunkSize: 256 * 1024 })
    ).close();
    await this.c.admin().registerRepository({ name, location: join(this.san, name) });
    // Every host's probe is over (kvm-b's fails: it does not see the SAN), so none runs beside
    // the jobs that follow.
    await eventually(
      `kvm-a and mover-1 reached repository ${name}, kvm-b probed it`,
      async () => {
        const r = await this.c.admin().showRepository({ name });
        const ok = (h: string) => r.reach.some((x) => x.hostId === h && x.reachable);
        return ok("kvm-a") && ok("mover-1") && r.reach.some((x) => x.hostId === "kvm-b") ? r : undefined;
      },
      60_000,
    );
  }

  async backup(
    vm: string,
    policy: string,
    mode = BackupMode.BACKUP_MODE_INCREMENTAL,
    timeoutMs = 300_000,
  ): Promise<JobRecord> {
    const { jobId } = await this.c.admin().backupNow({ vm, policy, mode });
    return waitForJobEnd(this.c, jobId, timeoutMs);
  }

  async dispose(): Promise<void> {
    await this.mover?.kill();
    await this.a?.kill();
    await this.b?.kill();
    await this.lab.dispose();
    if (this.san) await run("umount", [this.san], { allowFailure: true });
    await this.ns?.dispose();
    if (this.san) await rm(this.san, { recursive: true, force: true }).catch(() => {});
    await this.c?.dispose();
  }
}
