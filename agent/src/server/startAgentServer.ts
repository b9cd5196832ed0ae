import type { X509Certificate } from "node:crypto";
import { ServerCredentials } from "@grpc/grpc-js";
import { createServer, type Server } from "nice-grpc";
import { type CallContext, ServerError, type ServerMiddlewareCall, Status } from "nice-grpc-common";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { errorMappingMiddleware } from "../../../shared/src/grpc/errorMappingMiddleware.js";
import {
  PEER_CN_HEADER,
  PEER_VERDICT_HEADER,
  peerIdentityInterceptor,
} from "../../../shared/src/grpc/peerIdentityInterceptor.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { type AgentServiceDeps, createAgentService } from "./createAgentService.js";

export interface AgentServerConfig {
  /** host:port to listen on ("127.0.0.1:0" picks a free port). */
  listen: string;
  /**
   * Mutual TLS after enrollment: only the coordinator may call, i.e. a client certificate from the
   * fleet CA that `coordinator` accepts (its markers and pinned key, docs/architecture.md
   * "Identity"). Other hosts' certificates are refused: no agent calls another agent over gRPC.
   * Without TLS the server is plaintext (standalone, tests).
   */
  tls?: {
    caPem: string;
    certPem: string;
    keyPem: string;
    coordinator: { refuses(cert: X509Certificate): string | undefined };
  };
}

/** Refuses every call whose verified peer certificate is not the coordinator's. */
async function* onlyCoordinator<Req, Res>(call: ServerMiddlewareCall<Req, Res>, ctx: CallContext) {
  const verdict = ctx.metadata.get(PEER_VERDICT_HEADER);
  if (verdict !== "ok") {
    const cn = ctx.metadata.get(PEER_CN_HEADER);
    throw new ServerError(
      Status.PERMISSION_DENIED,
      verdict
        ? `only the coordinator may call this agent, not ${cn ?? "this caller"}: ${verdict}`
        : "only the coordinator may call this agent; present the coordinator's certificate",
    );
  }
  return yield* call.next(call.request, ctx);
}

export interface RunningAgentServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Starts the agent's gRPC server: mutual TLS once enrolled, plaintext when standalone. */
export async function startAgentServer(
  config: AgentServerConfig,
  deps: AgentServiceDeps,
  log: Logger,
): Promise<RunningAgentServer> {
  const tls = config.tls;
  const errors = errorMappingMiddleware((err, method) => log.error({ err, method }, "internal error"));
  const server = tls
    ? createServer({
        interceptors: [
          peerIdentityInterceptor(tls.caPem, { judge: (cert) => tls.coordinator.refuses(cert) }),
        ],
      })
        .use(errors)
        .use(onlyCoordinator)
    : createServer().use(errors);
  server.add(AgentServiceDefinition, createAgentService({ log, ...deps }));
  const port = await server.listen(
    config.listen,
    tls
      ? ServerCredentials.createSsl(
          Buffer.from(tls.caPem),
          [{ cert_chain: Buffer.from(tls.certPem), private_key: Buffer.from(tls.keyPem) }],
          true,
        )
      : ServerCredentials.createInsecure(),
  );
  log.info({ listen: config.listen, port, tls: Boolean(tls) }, "agent gRPC server listening");
  return { server, port, close: () => server.shutdown() };
}
