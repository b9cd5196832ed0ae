import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
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
      .requiredOption("--role <role>", "admin | operator | viewer")
      .option("--ttl <days>", "lifetime in days (default: the coordinator's tokens.defaultTtlDays)", (v) =>
        Number.parseInt(v, 10),
      ),
  ).action((o: O & { name: string; role: string; ttl?: number }) =>
    runCli(async () => {
      if (o.ttl !== undefined && !(Number.isInteger(o.ttl) && o.ttl > 0))
        throw new CairnError("invalid-argument", "--ttl must be a whole number of days above 0");
      const r = await connectCoordinator(o).createToken({ name: o.name, role: o.role, ttlDays: o.ttl ?? 0 });
      output(
        o.json,
        { token: r.token, expiresMs: Number(r.expiresMs) },
        () =>
          `${r.token}\n(shown once; the coordinator keeps only its hash; expires ${when(Number(r.expiresMs))})\n`,
      );
    }, o),
  );
  withConnectOptions(tokens.command("list").description("admin tokens: role, expiry, revocation")).action(
    (o: O) =>
      runCli(async () => {
        const r = await connectCoordinator(o).listTokens({});
        const rows = r.tokens.map((t) => ({
          name: t.name,
          role: t.role,
          createdMs: Number(t.createdMs),
          expiresMs: Number(t.expiresMs) || null,
          revokedMs: Number(t.revokedMs) || null,
          revokedBy: t.revokedBy || null,
        }));
        const now = Date.now();
        output(o.json, rows, () =>
          table(
            ["NAME", "ROLE", "CREATED", "EXPIRES", "STATE"],
            rows.map((t) => [
              t.name,
              t.role,
              when(t.createdMs),
              t.expiresMs ? when(t.expiresMs) : "never",
              t.revokedMs
                ? `revoked ${when(t.revokedMs)} by ${t.revokedBy}`
                : t.expiresMs && t.expiresMs <= now
                  ? "expired"
                  : "valid",
            ]),
          ),
        );
      }, o),
  );
  withConnectOptions(
    tokens.command("revoke <name>").description("revoke every token of that name, at once"),
  ).action((name: string, o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).revokeToken({ name });
      output(o.json, r, () => `revoked ${r.revoked} token(s) named ${name}\n`);
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
