import type { Command } from "commander";
import { initCoordinatorState } from "../../coordinator/src/bootstrap/initCoordinatorState.js";
import { loadCoordinatorConfig, pkiDir } from "../../coordinator/src/config/CoordinatorConfig.js";
import { runCli } from "../../shared/src/cli/runCli.js";
import { output } from "./output.js";

const list = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** `cairn ca init`: run once on the coordinator host. */
export function registerCaCommands(program: Command): void {
  const ca = program.command("ca").description("the fleet's certificate authority (on the coordinator host)");
  ca.command("init")
    .description("create the CA, the coordinator's certificate and a bootstrap admin token")
    .option("--config <file>", "coordinator config (for stateDir)")
    .option("--state-dir <dir>", "coordinator state directory (overrides the config)")
    .option("--dns <names>", "extra DNS names for the coordinator certificate (comma-separated)", list, [])
    .option(
      "--ip <addresses>",
      "extra IP addresses for the coordinator certificate (comma-separated)",
      list,
      [],
    )
    .option("--json", "machine-readable output")
    .action((o: { config?: string; stateDir?: string; dns: string[]; ip: string[]; json?: boolean }) =>
      runCli(async () => {
        const base = await loadCoordinatorConfig(o.config);
        const config = o.stateDir ? { ...base, stateDir: o.stateDir } : base;
        const r = await initCoordinatorState(config, {
          dnsNames: o.dns,
          ipAddresses: o.ip,
          signal: AbortSignal.timeout(120_000),
        });
        output(o.json, { stateDir: config.stateDir, caFile: r.caFile, tokenFile: r.tokenFile }, () =>
          [
            `created the fleet CA and the coordinator certificate in ${pkiDir(config)}`,
            `CA certificate for agents and the CLI: ${r.caFile}`,
            `bootstrap admin token (keep it secret): ${r.tokenFile}`,
            "",
          ].join("\n"),
        );
      }, o),
    );
}
