import { setTimeout as sleep } from "node:timers/promises";
import { ChannelCredentials } from "@grpc/grpc-js";
import { type Channel, createChannel, createClient } from "nice-grpc";
import type { HostInventory } from "../../../shared/src/gen/cairn/v1/common.js";
import {
  CoordinatorServiceDefinition,
  type DomainEvent,
  type StreamEventsRequest,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { AsyncQueue } from "../../../shared/src/grpc/AsyncQueue.js";
import { domainInfo } from "../../../shared/src/grpc/wire/domainInfo.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { DomainEventFeed, type ResolvedDomainEvent } from "../events/DomainEventFeed.js";
import type { DomainEventSource } from "../events/DomainEventSource.js";
import type { DomainInfo } from "../hypervisor/DomainInfo.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";
import { type CoordinatorPin, coordinatorServerCheck } from "./CoordinatorPin.js";
import { diffDomains } from "./diffDomains.js";
import { StreamedStates } from "./StreamedStates.js";

export interface CoordinatorLinkConfig {
  address: string;
  advertiseAddress: string;
  hostId: string;
  identity: { caPem: string; certPem: string; keyPem: string };
  /** Which coordinator to trust: the server dialled must pass it too (docs/architecture.md "Identity"). */
  pin: CoordinatorPin;
  pollMs: number;
}

export interface CoordinatorLinkDeps {
  /**
   * Where domains come from; absent on a mover-only agent (docs/transfer-paths.md §1), which
   * registers with no domains, never polls for them and only heartbeats.
   */
  hypervisor?: Hypervisor | undefined;
  jobs: JobRegistry;
  inventory(signal: AbortSignal): Promise<HostInventory>;
  log: Logger;
  /** libvirt's own lifecycle events; without it domain changes come from inventory polling only. */
  events?: DomainEventSource;
}

/** Streamed events kept while no session is open (a coordinator restart); the oldest go first. */
const MAX_PENDING_EVENTS = 1000;

/**
 * The agent's side of the fleet: register (inventory and domains), then heartbeat with the jobs it
 * runs, and report domain changes as events. Any failure drops back to registering after a
 * backoff, so a restarted coordinator (or a network cut) heals by itself.
 */
export class CoordinatorLink {
  private readonly stopper = new AbortController();
  private channel: Channel | undefined;
  private loop: Promise<void> | undefined;
  private eventLoop: Promise<void> | undefined;
  private readonly feed: DomainEventFeed | undefined;
  private readonly streamed = new StreamedStates();
  /** The open session's event stream; undefined between sessions. */
  private outbox: AsyncQueue<StreamEventsRequest> | undefined;
  private pending: DomainEvent[] = [];
  /** Resolves on the first successful registration (tests, startup logs). */
  readonly registered: Promise<void>;
  private markRegistered!: () => void;
  /** The coordinator's certificate as the last TLS handshake presented it. */
  private coordinatorPem: string | undefined;

  constructor(
    private readonly config: CoordinatorLinkConfig,
    private readonly deps: CoordinatorLinkDeps,
  ) {
    this.registered = new Promise((r) => (this.markRegistered = r));
    if (deps.events && deps.hypervisor)
      this.feed = new DomainEventFeed({ source: deps.events, hypervisor: deps.hypervisor, log: deps.log });
  }

  start(): void {
    this.loop ??= this.run();
    this.eventLoop ??= this.feed?.run((e) => this.streamedEvent(e), this.stopper.signal);
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop?.catch(() => {});
    await this.eventLoop?.catch(() => {});
    this.channel?.close();
  }

  /** One event from libvirt's stream: sent now, or kept until the next session opens. */
  private streamedEvent(e: ResolvedDomainEvent): void {
    const ev: DomainEvent = { ...e, timestampMs: BigInt(e.timestampMs), fromLibvirt: true };
    this.streamed.record(e.domainUuid, e.state, Date.now());
    if (this.outbox) this.outbox.push({ hostId: this.config.hostId, events: [ev] });
    else {
      this.pending.push(ev);
      if (this.pending.length > MAX_PENDING_EVENTS) this.pending.shift();
    }
  }

  private client() {
    if (!this.channel) {
      const { caPem, keyPem, certPem } = this.config.identity;
      const pin = this.config.pin;
      this.channel = createChannel(
        this.config.address,
        ChannelCredentials.createSsl(Buffer.from(caPem), Buffer.from(keyPem), Buffer.from(certPem), {
          checkServerIdentity: coordinatorServerCheck(
            (cert) => pin.refuses(cert),
            (pem) => {
              this.coordinatorPem = pem;
            },
          ),
        }),
      );
    }
    return createClient(CoordinatorServiceDefinition, this.channel);
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let backoffMs = 500;
    while (!signal.aborted) {
      try {
        await this.session(signal);
        backoffMs = 500;
      } catch (err) {
        if (signal.aborted) return;
        this.deps.log.warn(
          { err: (err as Error).message, coordinator: this.config.address },
          "coordinator link failed; retrying",
        );
        await sleep(backoffMs, undefined, { signal }).catch(() => {});
        backoffMs = Math.min(30_000, backoffMs * 2);
      }
    }
  }

  private async session(signal: AbortSignal): Promise<void> {
    const client = this.client();
    const call = { signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) };
    const domains = (await this.deps.hypervisor?.listDomains(call.signal)) ?? [];
    const reg = await client.register(
      {
        inventory: await this.deps.inventory(call.signal),
        domains: domains.map(domainInfo.toWire),
        agentAddress: this.config.advertiseAddress,
      },
      call,
    );
    this.deps.log.info(
      { hostId: reg.hostId, coordinator: this.config.address },
      "registered with the coordinator",
    );
    if (!this.config.pin.isPinned && this.coordinatorPem) {
      // Enrolled before pins existed: trust on first registration, once, and say so.
      await this.config.pin.pinIfUnpinned(this.coordinatorPem);
      this.deps.log.warn(
        { coordinator: this.config.address },
        "no coordinator key was pinned (enrolled by an older version): pinned the key of the coordinator just registered with; only it may call this agent from now on",
      );
    }
    this.markRegistered();
    const known = new Map(domains.map((d) => [d.uuid, d]));
    this.feed?.remember(domains);
    const heartbeatMs = Math.max(200, reg.heartbeatIntervalSeconds * 1000);
    // One long-lived event stream per session; if it breaks, the session starts over.
    const outbox = new AsyncQueue<StreamEventsRequest>();
    const streamStop = new AbortController();
    let streamFailure: unknown;
    const stream = client.streamEvents(outbox, { signal: AbortSignal.any([signal, streamStop.signal]) }).then(
      () => {
        streamFailure ??= new Error("the coordinator closed the event stream");
      },
      (e) => {
        streamFailure = e;
      },
    );
    // Streamed events from while no session was open: the registration's inventory may already
    // show their outcome, but their kind and detail are still news.
    if (this.pending.length) outbox.push({ hostId: this.config.hostId, events: this.pending.splice(0) });
    this.outbox = outbox;
    try {
      await this.beat(client, heartbeatMs, signal, known, outbox, () => streamFailure);
    } finally {
      this.outbox = undefined;
      outbox.end();
      streamStop.abort();
      await stream;
    }
  }

  private async beat(
    client: ReturnType<CoordinatorLink["client"]>,
    heartbeatMs: number,
    signal: AbortSignal,
    initial: Map<string, DomainInfo>,
    outbox: AsyncQueue<StreamEventsRequest>,
    failure: () => unknown,
  ): Promise<void> {
    let known = initial;
    let lastBeat = 0;
    while (!signal.aborted) {
      const broken = failure();
      if (broken) throw broken;
      const now = Date.now();
      if (now - lastBeat >= heartbeatMs) {
        const hb = await client.heartbeat(
          { hostId: this.config.hostId, runningJobIds: this.deps.jobs.runningJobIds() },
          { signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]) },
        );
        for (const id of hb.abortJobIds) this.deps.jobs.abort(id, "the coordinator no longer wants this job");
        lastBeat = now;
      }
      const hypervisor = this.deps.hypervisor;
      if (hypervisor) known = await this.pollDomains(hypervisor, known, outbox, signal);
      await sleep(hypervisor ? Math.min(this.config.pollMs, heartbeatMs) : heartbeatMs, undefined, {
        signal,
      }).catch(() => {});
    }
  }

  /** Looks for domain changes libvirt's events did not report and sends them; returns the new view. */
  private async pollDomains(
    hypervisor: Hypervisor,
    known: Map<string, DomainInfo>,
    outbox: AsyncQueue<StreamEventsRequest>,
    signal: AbortSignal,
  ): Promise<Map<string, DomainInfo>> {
    const pollStarted = Date.now();
    const current = await hypervisor.listDomains(AbortSignal.any([signal, AbortSignal.timeout(30_000)]));
    this.feed?.remember(current);
    const events = this.streamed.filter(diffDomains(known, current, Date.now()), pollStarted);
    if (events.length) {
      outbox.push({ hostId: this.config.hostId, events });
      this.deps.log.debug({ events: events.length }, "domain events sent");
    }
    return new Map(current.map((d) => [d.uuid, d]));
  }
}
