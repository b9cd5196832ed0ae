import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { Role } from "../store/records.js";

export type Principal =
  | { kind: "admin"; name: string; role: Role }
  | { kind: "agent"; hostId: string }
  | { kind: "public" };

/** The caller as established by the auth middleware (never by the request body). */
export function principalOf(ctx: CallContext): Principal {
  const p = (ctx as CallContext & { principal?: Principal }).principal;
  if (!p) throw new CairnError("unauthenticated", "the call carries no identity");
  return p;
}

export function principalName(p: Principal): string {
  return p.kind === "admin" ? `${p.role}:${p.name}` : p.kind === "agent" ? `agent:${p.hostId}` : "public";
}

export function agentHostId(ctx: CallContext): string {
  const p = principalOf(ctx);
  if (p.kind !== "agent")
    throw new CairnError(
      "permission-denied",
      "this call is for agents and needs an agent's client certificate",
    );
  return p.hostId;
}
