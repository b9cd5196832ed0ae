import { type CallContext, ServerError, type ServerMiddlewareCall, Status } from "nice-grpc-common";
import { PEER_CN_HEADER } from "../../../shared/src/grpc/peerIdentityInterceptor.js";
import type { Principal } from "../service/principal.js";
import type { Role } from "../store/records.js";
import { hashToken } from "./newSecretToken.js";
import { roleAllows } from "./roleAllows.js";

export interface AdminAuthOptions {
  /** Authenticated by the client certificate (verified by peerIdentityInterceptor). */
  agentMethods: ReadonlySet<string>;
  /** Authenticated inside the request (Enroll: its one-time token). */
  publicMethods: ReadonlySet<string>;
  resolveToken(tokenHash: string): { name: string; role: Role } | undefined;
}

export type AuthContextExt = { principal: Principal };

/**
 * Who is calling, before any handler runs: agents by certificate, people and scripts by a bearer
 * token whose role must allow the method. The principal is passed on in the call context.
 */
export function adminAuthMiddleware(opts: AdminAuthOptions) {
  return async function* auth<Req, Res>(
    call: ServerMiddlewareCall<Req, Res, AuthContextExt>,
    ctx: CallContext,
  ) {
    const method = call.method.path.slice(call.method.path.lastIndexOf("/") + 1);
    let principal: Principal;
    if (opts.publicMethods.has(method)) principal = { kind: "public" };
    else if (opts.agentMethods.has(method)) {
      const cn = ctx.metadata.get(PEER_CN_HEADER);
      if (!cn)
        throw new ServerError(
          Status.UNAUTHENTICATED,
          "this call needs the agent's client certificate; enroll the agent first (cairn-agent enroll)",
        );
      principal = { kind: "agent", hostId: cn };
    } else {
      const auth = ctx.metadata.get("authorization") ?? "";
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m?.[1]) throw new ServerError(Status.UNAUTHENTICATED, "no token: pass --token or set CAIRN_TOKEN");
      const who = opts.resolveToken(hashToken(m[1]));
      if (!who) throw new ServerError(Status.UNAUTHENTICATED, "unknown token: check --token / CAIRN_TOKEN");
      if (!roleAllows(who.role, method))
        throw new ServerError(
          Status.PERMISSION_DENIED,
          `role ${who.role} (token ${who.name}) may not call ${method}; ask an admin for a token with a higher role`,
        );
      principal = { kind: "admin", name: who.name, role: who.role };
    }
    return yield* call.next(call.request, { ...ctx, principal });
  };
}
