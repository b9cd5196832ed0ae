import type { X509Certificate } from "node:crypto";
import { chmod, lstat, rm } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { ServerCredentials } from "@grpc/grpc-js";
import { createServer, type Server } from "nice-grpc";
import { type CallContext, ServerError, type ServerMiddlewareCall, Status } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
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
  /**
   * host:port to listen on ("127.0.0.1:0" picks a free port), or unix:/absolute/path: a socket
   * only this process's user may use (mode 0600), what an un-enrolled daemon serves on.
   */
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

/**
 * Starts the agent's gRPC server: mutual TLS once enrolled; without TLS (not enrolled, tests) only
 * where told: the daemon then serves on a private unix socket, never on TCP.
 */
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
  const credentials = tls
    ? ServerCredentials.createSsl(
        Buffer.from(tls.caPem),
        [{ cert_chain: Buffer.from(tls.certPem), private_key: Buffer.from(tls.keyPem) }],
        true,
      )
    : ServerCredentials.createInsecure();
  const socket = config.listen.startsWith("unix:") ? config.listen.slice("unix:".length) : undefined;
  const port = socket
    ? await listenOnPrivateSocket(socket, () => server.listen(config.listen, credentials))
    : await server.listen(config.listen, credentials);
  log.info({ listen: config.listen, port, tls: Boolean(tls) }, "agent gRPC server listening");
  return { server, port: socket ? 0 : port, close: () => server.shutdown() };
}

/**
 * Binds a unix socket that only its owner may use: made under umask 0177 (never reachable by
 * others, not even between bind and chmod), then checked. A stale socket of an earlier run is
 * replaced; any other file there is refused.
 */
async function listenOnPrivateSocket(path: string, listen: () => Promise<number>): Promise<number> {
  if (!isAbsolute(path))
    throw new CairnError("invalid-argument", `socket path ${JSON.stringify(path)} is not absolute`);
  // sun_path holds 108 bytes with its NUL; a longer path fails inside gRPC with no reason.
  if (Buffer.byteLength(path) > 107)
    throw new CairnError("invalid-argument", `socket path ${path} is longer than a unix socket's 107 bytes`, {
      hint: "use a shorter stateDir",
    });
  const old = await lstat(path).catch(() => undefined);
  if (old && !old.isSocket())
    throw new CairnError("already-exists", `${path} exists and is not a socket: not replaced`);
  if (old) await rm(path);
  const umask = process.umask(0o177);
  let port: number;
  try {
    port = await listen();
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);
  return port;
}
