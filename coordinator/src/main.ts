#!/usr/bin/env node
import { parseArgs } from "node:util";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { createLogger } from "../../shared/src/log/createLogger.js";
import { CAIRN_VERSION } from "../../shared/src/version.js";
import { loadCoordinatorConfig } from "./config/CoordinatorConfig.js";
import { applyDaemonDefaults } from "./daemonDefaults.js";
import { startCoordinator } from "./startCoordinator.js";

// grpc-js passes an IP address as TLS servername (Node's DEP0123): harmless, and noise for operators.
process.noDeprecation = true;
applyDaemonDefaults();

/** cairn-coordinator: the fleet's one coordinator. SIGTERM/SIGINT: stop scheduling, detach from jobs, exit 0. */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: "string", short: "c" }, version: { type: "boolean" } },
  });
  if (values.version) {
    process.stdout.write(`cairn-coordinator ${CAIRN_VERSION}\n`);
    return;
  }
  const config = await loadCoordinatorConfig(values.config);
  const log = createLogger("cairn-coordinator", config.logLevel);
  const c = await startCoordinator(config, log);
  process.stdout.write(
    `cairn-coordinator ${CAIRN_VERSION} listening on port ${c.port}${c.metricsPort ? `, metrics on ${c.metricsPort}` : ""}\n`,
  );
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, "coordinator stopping");
    await c.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((err) => {
  const e = err instanceof CairnError ? err : undefined;
  process.stderr.write(`cairn-coordinator: ${e ? e.userMessage : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
