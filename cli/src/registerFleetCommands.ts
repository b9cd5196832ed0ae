import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import { domainState } from "../../shared/src/grpc/wire/domainState.js";
import { type ConnectOptions, connectCoordinator, withConnectOptions } from "./connectCoordinator.js";
import { ago, output, table, when } from "./output.js";

type O = ConnectOptions & { json?: boolean };

/** hosts, vms, tokens, audit. */
export function registerFleetCommands(program: Command): void {
  const hosts = program.command("hosts").description("KVM hosts and their agents");
  withConnectOptions(hosts.command("list").description("registered hosts, online or lost")).action((o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listHosts({});
      output(o.json, r.hosts, () =>
        table(
          ["HOST", "HOSTNAME", "STATUS", "ROLES", "VMS", "LAST SEEN", "DRAINED"],
          r.hosts.map((h) => [
            h.hostId,
            h.hostname,
            h.status,
            `${h.roles.join(",")}${h.applianceOf ? ` (on ${h.applianceOf})` : ""}`,
            h.vmCount,
            ago(h.lastSeenMs),
            h.drained ? `yes: ${h.drainReason}` : "",
          ]),
        ),
      );
    }, o),
  );
  withConnectOptions(
    hosts
      .command("enroll-token <host-id>")
      .description("a one-time token for `cairn-agent enroll` on that host")
      .option("--ttl <seconds>", "validity", (v) => Number.parseInt(v, 10), 3600),
  ).action((hostId: string, o: O & { ttl: number }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).createEnrollmentToken({ hostId, ttlSeconds: o.ttl });
      output(
        o.json,
        r,
        () => `${r.token}\n(valid until ${when(r.expiresMs)}; use once with cairn-agent enroll)\n`,
      );
    }, o),
  );

  const vms = program.command("vms").description("virtual machines across the fleet");
  withConnectOptions(vms.command("list").option("--host <id>", "only this host")).action(
    (o: O & { host?: string }) =>
      runCli(async () => {
        const r = await connectCoordinator(o).listVms({ hostId: o.host ?? "" });
        output(o.json, r.vms, () =>
          table(
            ["NAME", "UUID", "HOST", "STATE", "LAST BACKUP", "LABELS"],
            r.vms.map((v) => [
              v.name,
              v.uuid,
              v.hostId,
              domainState.fromWire(v.state),
              ago(v.lastBackupMs),
              Object.entries(v.labels)
                .map(([k, x]) => `${k}=${x}`)
                .join(","),
            ]),
          ),
        );
      }, o),
  );

  const tokens = program.command("tokens").description("API tokens for people and scripts");
  withConnectOptions(
    tokens
      .command("create")
      .requiredOption("--name <name>", "who or what uses it")
      .requiredOption("--role <role>", "admin | operator | viewer"),
  ).action((o: O & { name: string; role: string }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).createToken({ name: o.name, role: o.role });
      output(o.json, r, () => `${r.token}\n(shown once; the coordinator keeps only its hash)\n`);
    }, o),
  );

  const audit = program.command("audit").description("who changed what");
  withConnectOptions(
    audit.command("list").option("--limit <n>", "entries", (v) => Number.parseInt(v, 10), 50),
  ).action((o: O & { limit: number }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listAudit({ limit: o.limit });
      output(o.json, r.entries, () =>
        table(
          ["WHEN", "WHO", "ACTION", "TARGET", "DETAIL"],
          r.entries.map((e) => [
            when(e.atMs),
            e.principal,
            e.action,
            e.target,
            e.detail.split("\n")[0] ?? "",
          ]),
        ),
      );
    }, o),
  );
}
