import { existsSync } from "node:fs";
import type { Command } from "commander";
import { renderTable } from "../../shared/src/cli/renderTable.js";
import { parseLabels, readPassphrase, runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { Repository } from "../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../shared/src/repositoryLocation/openRepositoryStore.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";
import { type ConnectOptions, connectCoordinator, withConnectOptions } from "./connectCoordinator.js";
import { output, table, when } from "./output.js";
import { withCliRepository } from "./withCliRepository.js";

async function listIndexedSnapshots(
  o: ConnectOptions & { repository?: string; vm?: string; json?: boolean },
) {
  const r = await connectCoordinator(o).listSnapshots({ vm: o.vm ?? "", repository: o.repository ?? "" });
  output(o.json, r.snapshots, () =>
    table(
      ["SNAPSHOT", "VM", "REPOSITORY", "DISKS", "SIZE", "STORED", "CREATED", "JOB"],
      r.snapshots.map((s) => [
        s.snapshotId,
        s.vmName,
        s.repository,
        s.kinds,
        formatBytes(Number(s.logicalBytes)),
        formatBytes(Number(s.bytesStored)),
        when(s.createdMs),
        s.jobId,
      ]),
    ),
  );
}

export function registerRepoCommands(program: Command): void {
  const repo = program.command("repo").description("create and inspect backup repositories");
  repo
    .command("init <location>")
    .description("create a repository at a local path or s3://bucket/prefix")
    .option("--chunk-size <bytes>", "fixed chunk size (power of two)", (v) => Number.parseInt(v, 10))
    .option("--encrypt", "encrypt client-side (passphrase from --passphrase-file or CAIRN_PASSPHRASE)")
    .option("--passphrase-file <file>")
    .option("--json", "machine-readable output")
    .action(
      (
        location: string,
        o: { chunkSize?: number; encrypt?: boolean; passphraseFile?: string; json?: boolean },
      ) =>
        runCli(async () => {
          const passphrase = o.encrypt ? await readPassphrase(o.passphraseFile) : undefined;
          if (o.encrypt && !passphrase) {
            throw new CairnError("invalid-argument", "--encrypt needs a passphrase", {
              hint: "set CAIRN_PASSPHRASE or pass --passphrase-file (there is no default passphrase)",
            });
          }
          const r = await Repository.init(openRepositoryStore(location), {
            ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}),
            ...(passphrase ? { passphrase } : {}),
          });
          const info = { location: r.location, chunkSize: r.chunkSize, encrypted: Boolean(passphrase) };
          await r.close();
          process.stdout.write(
            o.json
              ? `${JSON.stringify(info)}\n`
              : `initialized repository ${info.location} (chunk size ${formatBytes(info.chunkSize)}${info.encrypted ? ", encrypted" : ""})\n`,
          );
        }, o),
    );

  repo
    .command("upgrade <location>")
    .description(
      "authenticate the config of an encrypted repository made before configs were (repository-format §3.1)",
    )
    .option("--passphrase-file <file>")
    .option("--json", "machine-readable output")
    .action((location: string, o: { passphraseFile?: string; json?: boolean }) =>
      runCli(async () => {
        const passphrase = await readPassphrase(o.passphraseFile);
        if (!passphrase) {
          throw new CairnError("invalid-argument", "upgrading a repository's config needs its passphrase", {
            hint: "set CAIRN_PASSPHRASE or pass --passphrase-file",
          });
        }
        const result = await Repository.upgradeConfig(openRepositoryStore(location), {
          passphrase,
          signal: AbortSignal.timeout(120_000),
        });
        process.stdout.write(
          o.json
            ? `${JSON.stringify({ location, result })}\n`
            : result === "upgraded"
              ? `authenticated the config of repository ${location}\n`
              : `the config of repository ${location} was already authenticated\n`,
        );
      }, o),
    );

  const snapshots = program.command("snapshots").description("list and show restore points");
  withConnectOptions(snapshots.command("list"))
    .option("--repo <location>", "read this repository directly instead of asking the coordinator")
    .option("--repository <name>", "only this registered repository (coordinator)")
    .option("--vm <name-or-uuid>", "only this VM")
    .option("--label <key=value...>", "only snapshots with these labels")
    .option("--passphrase-file <file>")
    .action(
      (
        o: ConnectOptions & {
          repo?: string;
          repository?: string;
          vm?: string;
          label?: string[];
          passphraseFile?: string;
          json?: boolean;
        },
      ) =>
        runCli(async () => {
          if (!o.repo) return listIndexedSnapshots(o);
          if (!o.repo.startsWith("s3://") && !existsSync(o.repo)) {
            throw new CairnError("not-found", `no repository at ${o.repo}`, {
              hint: "create one with cairn repo init",
            });
          }
          const labels = parseLabels(o.label);
          await withCliRepository(o.repo, o.passphraseFile, async (r) => {
            const all = (await r.listSnapshots()).filter(
              (s) =>
                (!o.vm || s.vm.name === o.vm || s.vm.uuid === o.vm) &&
                Object.entries(labels).every(([k, v]) => s.labels[k] === v),
            );
            if (o.json) {
              process.stdout.write(`${JSON.stringify(all)}\n`);
              return;
            }
            process.stdout.write(
              `${renderTable(
                ["SNAPSHOT", "VM", "DISKS", "CONSISTENCY", "READ", "STORED", "FINISHED"],
                all.map((s) => [
                  s.id,
                  s.vm.name,
                  s.disks.map((d) => `${d.target}:${d.kind}`).join(" "),
                  s.consistency.kind,
                  formatBytes(s.stats.bytesRead),
                  formatBytes(s.stats.bytesStored),
                  s.finishedAt,
                ]),
              )}\n`,
            );
          });
        }, o),
    );
  withConnectOptions(snapshots.command("show <id>"))
    .option("--repo <location>", "read this repository directly instead of asking the coordinator")
    .option("--passphrase-file <file>")
    .action((id: string, o: ConnectOptions & { repo?: string; passphraseFile?: string }) =>
      runCli(async () => {
        if (!o.repo) {
          const s = await connectCoordinator(o).showSnapshot({ snapshotId: id });
          process.stdout.write(`${JSON.stringify(JSON.parse(s.manifestJson), null, 2)}\n`);
          return;
        }
        await withCliRepository(o.repo, o.passphraseFile, async (r) => {
          process.stdout.write(`${JSON.stringify(await r.showSnapshot(id), null, 2)}\n`);
        });
      }),
    );
}
