import { type CallContext, ServerError, type ServerMiddlewareCall, Status } from "nice-grpc-common";
import { PEER_CN_HEADER } from "../../../shared/src/grpc/peerIdentityInterceptor.js";
import type { Principal } from "../service/principal.js";
import type { Role } from "../store/records.js";
import type { AuthRefusal } from "./FailedAuthAudit.js";
import { hashToken } from "./newSecretToken.js";
import { roleAllows } from "./roleAllows.js";

export interface AdminAuthOptions {
  /** Authenticated by the client certificate (verified by peerIdentityInterceptor). */
  agentMethods: ReadonlySet<string>;
  /** Authenticated inside the request (Enroll: its one-time token). */
  publicMethods: ReadonlySet<string>;
  resolveToken(tokenHash: string): { name: string; role: Role } | undefined;
  /** Why a known token is refused (revoked, expired), to name it in the audit log. */
  refusedToken?(tokenHash: string): { name: string; why: "revoked" | "expired" } | undefined;
  /** Told about every refused call before it is answered (FailedAuthAudit); its failure is ignored. */
  onRefused?(r: AuthRefusal): Promise<void>;
}

export type AuthContextExt = { principal: Principal };

/**
 * Who is calling, before any handler runs: agents by certificate, people and scripts by a bearer
 * token whose role must allow the method. The principal is passed on in the call context; every
 * refusal is reported (and audited, rate-limited) with the token's name when it is known.
 */
export function adminAuthMiddleware(opts: AdminAuthOptions) {
  return async function* auth<Req, Res>(
    call: ServerMiddlewareCall<Req, Res, AuthContextExt>,
    ctx: CallContext,
  ) {
    const method = call.method.path.slice(call.method.path.lastIndexOf("/") + 1);
    const refuse = async (
      status: Status,
      message: string,
      reason: string,
      principal?: string,
    ): Promise<never> => {
      await opts
        .onRefused?.({ peer: ctx.peer, reason, method, ...(principal ? { principal } : {}) })
        .catch(() => {});
      throw new ServerError(status, message);
    };
    let principal: Principal;
    if (opts.publicMethods.has(method)) principal = { kind: "public" };
    else if (opts.agentMethods.has(method)) {
      const cn = ctx.metadata.get(PEER_CN_HEADER);
      if (!cn)
        return await refuse(
          Status.UNAUTHENTICATED,
          "this call needs the agent's client certificate; enroll the agent first (cairn-agent enroll)",
          "no agent certificate",
        );
      principal = { kind: "agent", hostId: cn };
    } else {
      const auth = ctx.metadata.get("authorization") ?? "";
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m?.[1])
        return await refuse(Status.UNAUTHENTICATED, "no token: pass --token or set CAIRN_TOKEN", "no token");
      const hash = hashToken(m[1]);
      const who = opts.resolveToken(hash);
      if (!who) {
        const known = opts.refusedToken?.(hash);
        return await refuse(
          Status.UNAUTHENTICATED,
          "unknown token: check --token / CAIRN_TOKEN",
          known ? `${known.why} token` : "unknown token",
          known ? `token:${known.name}` : undefined,
        );
      }
      if (!roleAllows(who.role, method))
        return await refuse(
          Status.PERMISSION_DENIED,
          `role ${who.role} (token ${who.name}) may not call ${method}; ask an admin for a token with a higher role`,
          "role denied",
          `${who.role}:${who.name}`,
        );
      principal = { kind: "admin", name: who.name, role: who.role };
    }
    return yield* call.next(call.request, { ...ctx, principal });
  };
}
