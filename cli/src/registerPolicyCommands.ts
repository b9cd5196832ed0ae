import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import type { BackupMode as WireBackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import { backupMode } from "../../shared/src/grpc/wire/backupMode.js";
import { type ConnectOptions, connectCoordinator, withConnectOptions } from "./connectCoordinator.js";
import { output, table } from "./output.js";

type O = ConnectOptions & { json?: boolean };
/** A policy's mode as its YAML says it: `full` policies run copies (no checkpoint kept). */
function modeName(m: WireBackupMode): string {
  const name = backupMode.nameOf(m);
  return name === "copy" ? "full only" : (name ?? "?");
}

function errorComment(message: string, atMs: bigint): string {
  const when = atMs ? ` (${new Date(Number(atMs)).toISOString()})` : "";
  return `# the last scheduling pass could not run this policy: ${message}${when}\n`.replace(
    /\n(?!$)/g,
    "\n# ",
  );
}

export function registerPolicyCommands(program: Command): void {
  const policies = program.command("policies").description("backup policies (YAML documents)");
  withConnectOptions(
    policies
      .command("apply")
      .requiredOption("-f, --file <file>", "policy YAML (- for stdin)")
      .description("create or update"),
  ).action((o: O & { file: string }) =>
    runCli(async () => {
      const yaml =
        o.file === "-"
          ? await new Promise<string>((res) => {
              let s = "";
              process.stdin.on("data", (d) => (s += d)).on("end", () => res(s));
            })
          : await readFile(o.file, "utf8").catch((e: NodeJS.ErrnoException) => {
              throw new CairnError("not-found", `cannot read ${o.file}: ${e.code}`);
            });
      const r = await connectCoordinator(o).applyPolicy({ yaml });
      output(o.json, r, () => `policy ${r.name} ${r.created ? "created" : "updated"}\n`);
    }, o),
  );
  withConnectOptions(policies.command("list")).action((o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listPolicies({});
      output(
        o.json,
        r.policies.map(({ yaml: _y, ...p }) => ({ ...p, mode: modeName(p.mode) })),
        () =>
          table(
            ["NAME", "SCHEDULE", "MODE", "REPOSITORY", "LAST ERROR"],
            r.policies.map((p) => [p.name, p.schedule, modeName(p.mode), p.repository, p.lastError || "-"]),
          ),
      );
    }, o),
  );
  withConnectOptions(policies.command("show <name>")).action((name: string, o: O) =>
    runCli(async () => {
      const p = (await connectCoordinator(o).listPolicies({})).policies.find((x) => x.name === name);
      if (!p)
        throw new CairnError("not-found", `policy ${name} does not exist`, {
          hint: "see `cairn policies list`",
        });
      // The error first, as a YAML comment: what is shown still applies as is.
      output(o.json, p, () =>
        p.lastError ? `${errorComment(p.lastError, p.lastErrorMs)}${p.yaml}` : p.yaml,
      );
    }, o),
  );
  withConnectOptions(policies.command("delete <name>")).action((name: string, o: O) =>
    runCli(async () => {
      await connectCoordinator(o).deletePolicy({ name });
      output(o.json, { deleted: name }, () => `policy ${name} deleted\n`);
    }, o),
  );
}
