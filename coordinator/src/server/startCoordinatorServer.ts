import { createServer, type Server } from "nice-grpc";
import { CoordinatorServiceDefinition } from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { errorMappingMiddleware } from "../../../shared/src/grpc/errorMappingMiddleware.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { createCoordinatorService } from "./createCoordinatorService.js";

export interface CoordinatorServerConfig {
  listen: string;
}

export interface RunningCoordinatorServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startCoordinatorServer(
  config: CoordinatorServerConfig,
  log: Logger,
): Promise<RunningCoordinatorServer> {
  const server = createServer().use(
    errorMappingMiddleware((err, method) => log.error({ err, method }, "internal error")),
  );
  server.add(CoordinatorServiceDefinition, createCoordinatorService());
  const port = await server.listen(config.listen);
  log.info({ listen: config.listen, port }, "coordinator gRPC server listening");
  return { server, port, close: () => server.shutdown() };
}
