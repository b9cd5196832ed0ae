import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { runCli } from "../../shared/src/cli/runCli.js";
import type { ShowVmChainResponse } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { domainState } from "../../shared/src/grpc/wire/domainState.js";
import { type ConnectOptions, connectCoordinator, withConnectOptions } from "./connectCoordinator.js";
import { ago, output, table, when } from "./output.js";

type O = ConnectOptions & { json?: boolean };

/** vms show / vms chain (the checkpoint ledger), hosts drain / undrain. */
export function registerChainCommands(program: Command): void {
  const vms = program.commands.find((c) => c.name() === "vms") ?? program.command("vms");
  withConnectOptions(
    vms
      .command("show <vm>")
      .description("one VM: where it runs, its last backup, each disk's chain and recent events")
      .option("--events <n>", "recent lifecycle events", (v) => Number.parseInt(v, 10), 10),
  ).action((vm: string, o: O & { events: number }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).showVmChain({ vm, events: o.events });
      output(o.json, r, () => `${header(r)}\n${chains(r)}\n\nevents:\n${events(r)}`);
    }, o),
  );
  withConnectOptions(
    vms
      .command("chain <vm>")
      .description("the checkpoint ledger of a VM: per disk, its chain in plain words, then every entry"),
  ).action((vm: string, o: O) =>
    runCli(async () => {
      const r = await connectCoordinator(o).showVmChain({ vm, events: 20 });
      output(o.json, r, () => {
        const entries = table(
          ["CHECKPOINT", "DISK", "STATE", "KIND", "HOST", "SNAPSHOT", "CHANGED", "REASON"],
          r.entries.map((e) => [
            e.checkpoint,
            e.target,
            e.state,
            e.kind,
            e.hostId,
            e.snapshotId,
            when(e.changedMs),
            e.reason,
          ]),
        );
        return `${chains(r)}\n\n${r.entries.length ? entries : "(no ledger entries yet)\n"}`;
      });
    }, o),
  );

  const hosts = program.commands.find((c) => c.name() === "hosts") ?? program.command("hosts");
  withConnectOptions(
    hosts
      .command("drain <host-id>")
      .description("dispatch no new jobs to a host (to evacuate it); running backups finish or are aborted")
      .option("--reason <text>", "why (shown in hosts list and the audit log)")
      .option("--wait", "return once no backup runs on the host")
      .option("--abort-running", "abort running backups cleanly; they are queued again")
      .option(
        "--timeout <seconds>",
        "with --wait: give up after this long",
        (v) => Number.parseInt(v, 10),
        3600,
      ),
  ).action(
    (hostId: string, o: O & { reason?: string; wait?: boolean; abortRunning?: boolean; timeout: number }) =>
      runCli(async () => {
        const client = connectCoordinator(o);
        const r = await client.drainHost({
          hostId,
          reason: o.reason ?? "",
          abortRunning: Boolean(o.abortRunning),
        });
        let running = r.runningJobIds;
        if (o.wait || o.abortRunning) {
          const deadline = Date.now() + o.timeout * 1000;
          while (Date.now() < deadline) {
            const jobs = await client.listJobs({ state: "running", vm: "", limit: 0 });
            running = jobs.jobs.filter((j) => j.hostId === hostId && j.kind === "backup").map((j) => j.jobId);
            if (!running.length) break;
            if (!o.json)
              process.stderr.write(
                `waiting for ${running.length} backup(s) on ${hostId}: ${running.join(", ")}\n`,
              );
            await sleep(2000);
          }
        }
        output(o.json, { hostId, aborted: r.abortedJobIds, running }, () =>
          [
            `${hostId} drained: no new jobs are dispatched to it (cairn hosts undrain ${hostId} reverses it).`,
            r.abortedJobIds.length ? `aborted and queued again: ${r.abortedJobIds.join(", ")}` : "",
            running.length ? `still running: ${running.join(", ")}` : "no backup runs there now.",
            "",
          ]
            .filter((l, i, a) => l || i === a.length - 1)
            .join("\n"),
        );
        if ((o.wait || o.abortRunning) && running.length) process.exitCode = 3;
      }, o),
  );
  withConnectOptions(
    hosts.command("undrain <host-id>").description("dispatch jobs to a drained host again"),
  ).action((hostId: string, o: O) =>
    runCli(async () => {
      await connectCoordinator(o).undrainHost({ hostId });
      output(o.json, { hostId, drained: false }, () => `${hostId} takes jobs again.\n`);
    }, o),
  );
}

function header(r: ShowVmChainResponse): string {
  const v = r.vm;
  if (!v) return "";
  return `${v.name} (${v.uuid})\n  host: ${v.hostId}, ${domainState.fromWire(v.state)}; last backup ${ago(v.lastBackupMs)}`;
}

function chains(r: ShowVmChainResponse): string {
  return r.disks.length ? r.disks.map((d) => `  ${d.summary}`).join("\n") : "  (no disks known)";
}

function events(r: ShowVmChainResponse): string {
  return r.events.length
    ? table(
        ["WHEN", "HOST", "EVENT", "DETAIL"],
        r.events.map((e) => [when(e.atMs), e.hostId, e.kind, e.detail]),
      )
    : "  (none recorded)\n";
}
