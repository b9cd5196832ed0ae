#!/usr/bin/env node
import { parseArgs } from "node:util";
import { readPassphrase } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";
import { CAIRN_VERSION } from "../../shared/src/version.js";
import { loadAgentConfig } from "./config/AgentConfig.js";
import { createAgentRuntime } from "./createAgentRuntime.js";
import { JobRegistry } from "./jobs/JobRegistry.js";
import { startAgentServer } from "./server/startAgentServer.js";

/**
 * cairn-agent: the daemon on every KVM host. Start: load config → recover (thaw guests left frozen,
 * clean up interrupted jobs) → serve AgentService. SIGTERM/SIGINT: abort running jobs (their cleanup
 * thaws guests and ends libvirt jobs), stop serving, exit 0.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: "string", short: "c" }, version: { type: "boolean" } },
  });
  if (values.version) {
    process.stdout.write(`cairn-agent ${CAIRN_VERSION}\n`);
    return;
  }
  const config = await loadAgentConfig(values.config);
  const rt = await createAgentRuntime(config);
  const startup = await rt.recover(AbortSignal.timeout(120_000));
  rt.log.info({ ...startup, version: CAIRN_VERSION }, "agent startup recovery done");
  const passphrase = await readPassphrase(config.repositoryPassphraseFile);
  const jobs = new JobRegistry();
  const server = await startAgentServer(
    { listen: config.listen },
    {
      hypervisor: rt.hypervisor,
      hostId: rt.hostId,
      libvirtUri: config.libvirtUri,
      backups: {
        backup: {
          hypervisor: rt.hypervisor,
          guestAgent: rt.guestAgent,
          freezeMarkers: rt.freezeMarkers,
          log: rt.log,
        },
        config: rt.liveBackup,
        jobs,
        openRepository: (location, signal) =>
          Repository.open(openRepositoryStore(location), { ...(passphrase ? { passphrase } : {}), signal }),
      },
    },
    rt.log,
  );
  process.stdout.write(`cairn-agent ${CAIRN_VERSION} listening on port ${server.port}\n`);
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    rt.log.info({ signal: sig, running: jobs.runningJobIds() }, "agent stopping");
    await jobs.abortAll(`agent stopping (${sig})`, 60_000);
    await server.close();
    rt.log.info("agent stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

main().catch((err) => {
  const e = err instanceof CairnError ? err : undefined;
  process.stderr.write(`cairn-agent: ${e ? e.userMessage : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
