import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { CoordinatorServiceImplementation } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { newSecretToken } from "../auth/newSecretToken.js";
import type { Role } from "../store/records.js";
import type { CoordinatorContext } from "./CoordinatorContext.js";
import { principalName, principalOf } from "./principal.js";

const ROLES: readonly Role[] = ["admin", "operator", "viewer"];
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;

type AccessRpcs = Pick<
  CoordinatorServiceImplementation,
  "createToken" | "createEnrollmentToken" | "listAudit"
>;

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
      const { token, hash } = newSecretToken("adm");
      await c.store.putToken({
        hash,
        name: req.name,
        kind: "admin",
        role: req.role as Role,
        hostId: null,
        createdMs: c.now(),
        expiresMs: null,
        usedMs: null,
      });
      await c.audit(principalName(principalOf(ctx)), "CreateToken", req.name, `role ${req.role}`);
      return { token };
    },

    async createEnrollmentToken(req, ctx) {
      if (!HOST_ID.test(req.hostId))
        throw new CairnError(
          "invalid-argument",
          `host_id ${JSON.stringify(req.hostId)} is not a valid host id`,
        );
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
