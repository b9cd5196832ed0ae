import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  CoordinatorServiceImplementation,
  DomainEvent,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { domainInfo } from "../../../shared/src/grpc/wire/domainInfo.js";
import { domainState } from "../../../shared/src/grpc/wire/domainState.js";
import { hostInventory } from "../../../shared/src/grpc/wire/hostInventory.js";
import { isReservedHostId, reservedHostId } from "../../../shared/src/pki/coordinatorIdentity.js";
import { hashToken } from "../auth/newSecretToken.js";
import type { VmUpdate } from "../store/records.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { agentHostId } from "./principal.js";

const ADDRESS = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;
const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

const EVENT_STATE: Record<string, string> = {
  started: "running",
  resumed: "running",
  migrated: "running",
  stopped: "shutoff",
  shutdown: "shutoff",
  crashed: "crashed",
  paused: "paused",
  suspended: "paused",
};

type AgentRpcs = Pick<CoordinatorServiceImplementation, "enroll" | "register" | "heartbeat" | "streamEvents">;

/** The RPCs agents call: Enroll (one-time token), then Register/Heartbeat/StreamEvents (client certificate). */
export function agentRpcs(c: CoordinatorContext): AgentRpcs {
  return {
    async enroll(req, ctx: CallContext) {
      if (!req.token) throw new CairnError("invalid-argument", "token is required");
      if (!req.csrPem.includes("CERTIFICATE REQUEST"))
        throw new CairnError("invalid-argument", "csr_pem is not a PEM certificate signing request");
      if (!c.ca)
        throw new CairnError("failed-precondition", "this coordinator has no CA", {
          hint: "run `cairn ca init` on it",
        });
      // Before the token is spent: a host asking for the coordinator's name keeps its token.
      if (req.hostname && isReservedHostId(req.hostname)) throw reservedHostId(req.hostname);
      const token = await c.store.consumeEnrollmentToken(hashToken(req.token), c.now());
      if (!token) {
        // The claimed hostname is not in the entry: anyone can send any, and one entry per name
        // would let a brute force flood the log.
        await c.failedAuth
          .refused({ peer: ctx.peer, reason: "unknown, used or expired enrollment token", method: "Enroll" })
          .catch((err) => c.log.error({ err }, "auditing a refused enrollment failed"));
        throw new CairnError("unauthenticated", "the enrollment token is unknown, used or expired", {
          hint: "create a new one with `cairn hosts enroll-token <host-id>`",
        });
      }
      const hostId = token.hostId ?? req.hostname;
      if (!HOST_ID.test(hostId))
        throw new CairnError("invalid-argument", `hostname ${JSON.stringify(hostId)} is not a valid host id`);
      if (isReservedHostId(hostId)) throw reservedHostId(hostId);
      const certificatePem = await c.ca.signCsr(req.csrPem, {
        commonName: hostId,
        usage: "client+server",
        dnsNames: [hostId, "localhost"],
        ipAddresses: ["127.0.0.1"],
        days: 825,
        signal: ctx.signal,
      });
      const old = await c.store.getHost(hostId);
      await c.store.putHost({
        id: hostId,
        hostname: req.hostname || hostId,
        agentAddress: old?.agentAddress ?? "",
        status: old?.status ?? "lost",
        lastSeenMs: old?.lastSeenMs ?? 0,
        enrolledMs: c.now(),
        inventory: old?.inventory ?? {},
        drain: old?.drain ?? null,
        // Kept to issue network exports' client certificates for this host's key (§5).
        certificatePem,
      });
      await c.audit(
        `enrollment:${token.name}`,
        "Enroll",
        hostId,
        `certificate issued to ${req.hostname || hostId}`,
      );
      return { hostId, certificatePem, caCertificatePem: c.ca.caCertPem };
    },

    async register(req, ctx: CallContext) {
      const hostId = agentHostId(ctx);
      if (!ADDRESS.test(req.agentAddress))
        throw new CairnError(
          "invalid-argument",
          `agent_address ${JSON.stringify(req.agentAddress)} is not host:port`,
        );
      const inv = req.inventory;
      if (inv?.hostId && inv.hostId !== hostId)
        throw new CairnError(
          "permission-denied",
          `inventory.host_id ${inv.hostId} does not match the certificate's host ${hostId}`,
          { hint: "set hostId in the agent config to the id it enrolled with, or enroll again" },
        );
      const now = c.now();
      const old = await c.store.getHost(hostId);
      await c.store.putHost({
        id: hostId,
        hostname: inv?.hostname || hostId,
        agentAddress: req.agentAddress,
        status: "online",
        lastSeenMs: now,
        enrolledMs: old?.enrolledMs ?? now,
        inventory: inv ? hostInventory.fromWire(inv) : {},
        drain: old?.drain ?? null,
        ...(old?.certificatePem ? { certificatePem: old.certificatePem } : {}),
      });
      await c.store.applyInventory(
        hostId,
        req.domains.map(domainInfo.fromWire).map((d) => ({
          uuid: d.uuid,
          name: d.name,
          state: d.state,
          labels: d.labels,
          disks: d.disks.map(({ target, format, virtualSize }) => ({ target, format, virtualSize })),
          present: true,
          updatedMs: now,
        })),
        now,
      );
      c.log.info(
        { host: hostId, address: req.agentAddress, domains: req.domains.length, was: old?.status },
        "agent registered",
      );
      // Where the coordinator sends this host's jobs, and that it is back: audited when it changes
      // (an agent re-registers on every reconnect; those are not news).
      const change = !old?.agentAddress
        ? `registered at ${req.agentAddress}`
        : old.agentAddress !== req.agentAddress
          ? `address ${old.agentAddress} → ${req.agentAddress}`
          : old.status === "lost"
            ? `back at ${req.agentAddress} (was lost)`
            : undefined;
      if (change)
        await c.audit(`agent:${hostId}`, "Register", hostId, `${change}; ${req.domains.length} domains`);
      c.metrics.hostEvent(old?.status === "lost" ? "returned" : "registered");
      // Chains this host now holds, or that jobs left pending while it was away.
      void c.ledger
        .reconcileHost(
          hostId,
          req.domains.filter((d) => domainState.fromWire(d.state) === "running").map((d) => d.uuid),
        )
        .catch((err) =>
          c.log.error({ err, host: hostId }, "ledger reconciliation after registration failed"),
        );
      c.kick();
      // What it reaches may have changed while it was away (or it is new): jobs wait for this.
      void c.reach.probeHost(hostId);
      return { hostId, heartbeatIntervalSeconds: c.config.heartbeatIntervalSeconds };
    },

    async heartbeat(req, ctx: CallContext) {
      const hostId = agentHostId(ctx);
      if (req.hostId && req.hostId !== hostId)
        throw new CairnError(
          "permission-denied",
          `host_id ${req.hostId} does not match the certificate's host ${hostId}`,
        );
      const host = await c.store.getHost(hostId);
      if (!host?.agentAddress)
        throw new CairnError("not-found", `host ${hostId} has not registered`, {
          hint: "the agent registers again",
        });
      const wasLost = host.status === "lost";
      const now = c.now();
      await c.store.touchHost(hostId, now);
      c.runningOnAgents.report(hostId, now, req.runningJobIds);
      c.metrics.heartbeats.inc();
      if (wasLost) c.kick();
      // Jobs the agent runs that the coordinator has already given up on (cancelled while unreachable).
      const abortJobIds: string[] = [];
      for (const id of req.runningJobIds) {
        const j = await c.store.getJob(id);
        if (!j || j.state === "cancelled" || j.state === "failed") abortJobIds.push(id);
      }
      return { abortJobIds };
    },

    async streamEvents(requests, ctx: CallContext) {
      const hostId = agentHostId(ctx);
      let accepted = 0;
      let following: Promise<void> = Promise.resolve();
      for await (const req of requests) {
        if (req.hostId && req.hostId !== hostId)
          throw new CairnError(
            "permission-denied",
            `host_id ${req.hostId} does not match the certificate's host ${hostId}`,
          );
        const now = c.now();
        const updates = req.events.map((e: DomainEvent, i: number): VmUpdate => {
          if (!UUID.test(e.domainUuid))
            throw new CairnError(
              "invalid-argument",
              `events[${i}].domain_uuid ${JSON.stringify(e.domainUuid)} is not a uuid`,
            );
          // Older agents put the new state in detail; newer ones send it as state, detail as libvirt's.
          const typed = Boolean(e.state) || e.fromLibvirt;
          const state = e.state || (typed ? "" : e.detail) || EVENT_STATE[e.kind] || "unknown";
          const atMs = Number(e.timestampMs);
          return {
            uuid: e.domainUuid,
            name: e.domainName,
            hostId,
            state,
            present: e.kind !== "undefined",
            // An agent clock far off is not trusted for ordering reports across hosts.
            atMs: Number.isFinite(atMs) && Math.abs(atMs - now) < 10 * 60_000 ? atMs : now,
            event: {
              kind: e.kind,
              detail: typed ? e.detail : "",
              fromLibvirt: e.fromLibvirt,
            },
          };
        });
        accepted += await c.events.push(updates);
        c.metrics.events.inc({}, updates.length);
        // After the inventory applied them (ownership settled), in the stream's order, but beside
        // the next message: awaiting it here made each agent's stream wait for a ledger query too,
        // which halved the event rate of a fleet's closed-loop streams (bench:coordinator).
        const observed = updates.map((u) => ({
          vmUuid: u.uuid,
          kind: u.event?.kind ?? "",
          detail: u.event?.detail ?? "",
          state: u.state,
          atMs: u.atMs ?? now,
        }));
        following = following
          .then(() => c.ledger.observe(hostId, observed))
          .catch((err) => c.log.error({ err, host: hostId }, "the ledger could not follow events"));
      }
      await following;
      return { accepted: BigInt(accepted) };
    },
  };
}
