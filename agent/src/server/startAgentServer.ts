import { createServer, type Server } from "nice-grpc";
import { AgentServiceDefinition } from "../../../shared/src/gen/cairn/v1/agent.js";
import { errorMappingMiddleware } from "../../../shared/src/grpc/errorMappingMiddleware.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { type AgentServiceDeps, createAgentService } from "./createAgentService.js";

export interface AgentServerConfig {
  /** host:port to listen on ("127.0.0.1:0" picks a free port). */
  listen: string;
}

export interface RunningAgentServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Starts the agent's gRPC server. TLS arrives with enrollment (coordinator issue). */
export async function startAgentServer(
  config: AgentServerConfig,
  deps: AgentServiceDeps,
  log: Logger,
): Promise<RunningAgentServer> {
  const server = createServer().use(
    errorMappingMiddleware((err, method) => log.error({ err, method }, "internal error")),
  );
  server.add(AgentServiceDefinition, createAgentService(deps));
  const port = await server.listen(config.listen);
  log.info({ listen: config.listen, port }, "agent gRPC server listening");
  return { server, port, close: () => server.shutdown() };
}
