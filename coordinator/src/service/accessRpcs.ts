import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { CoordinatorServiceImplementation } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { isReservedHostId, reservedHostId } from "../../../shared/src/pki/coordinatorIdentity.js";
import { newSecretToken } from "../auth/newSecretToken.js";
import type { Role } from "../store/records.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { principalName, principalOf } from "./principal.js";

const ROLES: readonly Role[] = ["admin", "operator", "viewer"];
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;

type AccessRpcs = Pick<
  CoordinatorServiceImplementation,
  "createToken" | "listTokens" | "revokeToken" | "createEnrollmentToken" | "listAudit"
>;

const DAY_MS = 86_400_000;

/** Tokens for people and scripts, one-time enrollment tokens for agents, and the audit log. */
export function accessRpcs(c: CoordinatorContext): AccessRpcs {
  return {
    async createToken(req, ctx) {
      if (!req.name)
        throw new CairnError("invalid-argument", "name is required (who or what uses the token)");
      if (!ROLES.includes(req.role as Role))
        throw new CairnError(
          "invalid-argument",
          `role ${JSON.stringify(req.role)} is not one of ${ROLES.join(", ")}`,
        );
      const { defaultTtlDays, maxTtlDays } = c.config.tokens;
      const days = req.ttlDays || defaultTtlDays;
      if (days > maxTtlDays)
        throw new CairnError(
          "invalid-argument",
          `ttl_days ${days} is above tokens.maxTtlDays (${maxTtlDays})`,
          {
            hint: "ask for a shorter lifetime, or raise tokens.maxTtlDays in the coordinator's config",
          },
        );
      const { token, hash } = newSecretToken("adm");
      const createdMs = c.now();
      const expiresMs = createdMs + days * DAY_MS;
      await c.store.putToken({
        hash,
        name: req.name,
        kind: "admin",
        role: req.role as Role,
        hostId: null,
        createdMs,
        expiresMs,
        usedMs: null,
        revokedMs: null,
        revokedBy: null,
      });
      await c.audit(
        principalName(principalOf(ctx)),
        "CreateToken",
        req.name,
        `role ${req.role}, expires ${new Date(expiresMs).toISOString()}`,
      );
      return { token, expiresMs: BigInt(expiresMs) };
    },

    async listTokens() {
      const tokens = (await c.store.listTokens())
        .filter((t) => t.kind === "admin")
        .sort((a, b) => a.name.localeCompare(b.name) || a.createdMs - b.createdMs);
      return {
        tokens: tokens.map((t) => ({
          name: t.name,
          role: t.role ?? "",
          createdMs: BigInt(t.createdMs),
          expiresMs: BigInt(t.expiresMs ?? 0),
          revokedMs: BigInt(t.revokedMs ?? 0),
          revokedBy: t.revokedBy ?? "",
        })),
      };
    },

    async revokeToken(req, ctx) {
      if (!req.name) throw new CairnError("invalid-argument", "name is required (the token's name)");
      const who = principalName(principalOf(ctx));
      const named = (await c.store.listTokens()).filter((t) => t.kind === "admin" && t.name === req.name);
      const live = named.filter((t) => !t.revokedMs);
      if (!live.length) {
        const any = named.length > 0;
        throw new CairnError(
          "not-found",
          any ? `every token named ${req.name} is revoked already` : `no token named ${req.name}`,
          { hint: "see `cairn tokens list`" },
        );
      }
      const at = c.now();
      for (const t of live) await c.store.putToken({ ...t, revokedMs: at, revokedBy: who });
      // The audit hook replaces the token cache: from here on the token is refused.
      await c.audit(who, "RevokeToken", req.name, `${live.length} token(s)`);
      return { revoked: live.length };
    },

    async createEnrollmentToken(req, ctx) {
      if (!HOST_ID.test(req.hostId))
        throw new CairnError(
          "invalid-argument",
          `host_id ${JSON.stringify(req.hostId)} is not a valid host id`,
        );
      if (isReservedHostId(req.hostId)) throw reservedHostId(req.hostId);
      const ttl = req.ttlSeconds || 3600;
      if (ttl > 7 * 86400) throw new CairnError("invalid-argument", "ttl_seconds must be at most 7 days");
      const { token, hash } = newSecretToken("enr");
      const now = c.now();
      await c.store.putToken({
        hash,
        name: `enroll ${req.hostId}`,
        kind: "enrollment",
        role: null,
        hostId: req.hostId,
        createdMs: now,
        expiresMs: now + ttl * 1000,
        usedMs: null,
      });
      await c.audit(principalName(principalOf(ctx)), "CreateEnrollmentToken", req.hostId, `ttl ${ttl} s`);
      return { token, expiresMs: BigInt(now + ttl * 1000) };
    },

    async listAudit(req) {
      return {
        entries: (await c.store.listAudit(Math.min(req.limit || 50, 10_000))).map((e) => ({
          atMs: BigInt(e.atMs),
          principal: e.principal,
          action: e.action,
          target: e.target,
          detail: e.detail,
        })),
      };
    },
  };
}
