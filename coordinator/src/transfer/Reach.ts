import { ClientError, Status } from "nice-grpc-common";
import { repositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { AgentClients } from "../agents/AgentClients.js";
import type { ReachRecord } from "../store/records.js";
import type { Store } from "../store/Store.js";

/** How long one host's probe may take (each location writes and reads 8 MiB). */
const PROBE_TIMEOUT_MS = 120_000;

/**
 * Repository reach (docs/transfer-paths.md §2): asks agents to probe every registered repository
 * (on registration, when a repository is registered, and every interval), keeps each host's newest
 * reports, and teaches a registered repository its id from the first report that opened its
 * registered location. One probe per host at a time.
 */
export class Reach {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** The probe that follows a running one, per host. */
  private readonly queued = new Map<string, Promise<void>>();
  private readonly stopping = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      store: Store;
      clients: AgentClients;
      log: Logger;
      now: () => number;
      /** A new report may unblock queued jobs: asks for a scheduling pass. */
      kick: () => void;
      intervalMs: number;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.probeAll(this.stopping.signal), this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.stopping.abort();
  }

  /** Probes every online host; failures are logged per host. */
  async probeAll(signal: AbortSignal = this.stopping.signal): Promise<void> {
    try {
      const hosts = (await this.deps.store.listHosts()).filter(
        (h) => h.status === "online" && h.agentAddress,
      );
      await Promise.all(hosts.map((h) => this.probeHost(h.id, signal)));
    } catch (err) {
      if (!signal.aborted) this.deps.log.warn({ err }, "repository probes failed");
    }
  }

  /**
   * Probes one host. A probe of it already running was asked for the repositories registered when
   * it started: one more follows it (a repository registered meanwhile is probed then, not at the
   * next interval), and callers asking meanwhile share that one. Never throws.
   */
  probeHost(hostId: string, signal: AbortSignal = this.stopping.signal): Promise<void> {
    const running = this.inFlight.get(hostId);
    if (running) {
      let next = this.queued.get(hostId);
      if (!next) {
        next = running.then(() => {
          this.queued.delete(hostId);
          return this.probeHost(hostId, signal);
        });
        this.queued.set(hostId, next);
      }
      return next;
    }
    const p = this.probe(hostId, AbortSignal.any([signal, this.stopping.signal]))
      .catch((err) => {
        if (!signal.aborted) this.deps.log.warn({ err, host: hostId }, "repository probe failed");
      })
      .finally(() => this.inFlight.delete(hostId));
    this.inFlight.set(hostId, p);
    return p;
  }

  private async probe(hostId: string, signal: AbortSignal): Promise<void> {
    const { store, clients, log } = this.deps;
    const host = await store.getHost(hostId);
    if (!host?.agentAddress || host.status !== "online") return;
    const repos = await store.listRepositories();
    let reports: ReachRecord[];
    try {
      const res = await clients
        .get(host)
        .probeRepositories(
          { targets: repos.map((r) => ({ name: r.name, location: r.location })) },
          { signal: AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) },
        );
      reports = res.reach.map(repositoryReach.fromWire);
    } catch (e) {
      if (!(e instanceof ClientError && e.code === Status.UNIMPLEMENTED)) throw e;
      // An agent older than transfer paths wrote every repository through its registered
      // location, as all agents did: it keeps doing so (lan-free), with no measured speed.
      reports = repos.map((r) => ({
        repositoryId: r.id ?? "",
        name: r.name,
        location: r.location,
        reachable: true,
        error: "",
        writeMiBs: 0,
        readMiBs: 0,
        probedMs: this.deps.now(),
        hostId,
      }));
    }
    await store.putReach(hostId, reports);
    for (const repo of repos) {
      if (repo.id) continue;
      const opened = reports.find(
        (r) => r.reachable && r.repositoryId && r.name === repo.name && r.location === repo.location,
      );
      if (!opened) continue;
      const now = await store.getRepository(repo.name);
      // Re-registered meanwhile at another location: that one learns its id from its own probe.
      if (now && !now.id && now.location === repo.location) {
        await store.putRepository({ ...now, id: opened.repositoryId });
        log.info({ repository: repo.name, id: opened.repositoryId, host: hostId }, "repository id learnt");
      }
    }
    log.debug(
      { host: hostId, reachable: reports.filter((r) => r.reachable).map((r) => r.name || r.location) },
      "repository probe",
    );
    this.deps.kick();
  }
}
