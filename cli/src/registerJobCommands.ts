import type { Command } from "commander";
import { ProgressBar } from "../../shared/src/cli/ProgressBar.js";
import { runCli } from "../../shared/src/cli/runCli.js";
import { CairnError } from "../../shared/src/errors/CairnError.js";
import { BackupMode } from "../../shared/src/gen/cairn/v1/common.js";
import type { JobSummary } from "../../shared/src/gen/cairn/v1/coordinator.js";
import { backupMode } from "../../shared/src/grpc/wire/backupMode.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";
import {
  type ConnectOptions,
  type CoordinatorClient,
  connectCoordinator,
  withConnectOptions,
} from "./connectCoordinator.js";
import { isRestoreJob, restoreRows } from "./describeRestore.js";
import { ago, output, table } from "./output.js";

type O = ConnectOptions & { json?: boolean };

/**
 * Follows a job to its end with a progress bar; resolves with the final summary. Ctrl-C stops
 * watching, not the job: it goes on on its agent, and the message says how to find or cancel it.
 */
export async function watchJob(
  client: CoordinatorClient,
  jobId: string,
  json: boolean | undefined,
): Promise<JobSummary> {
  const bar = new ProgressBar(jobId.slice(-6));
  const detach = () => {
    bar.done();
    process.stderr.write(
      `\ndetached from job ${jobId}; it goes on: \`cairn jobs watch ${jobId}\` follows it again, \`cairn jobs cancel ${jobId}\` stops it\n`,
    );
    process.exit(130);
  };
  process.once("SIGINT", detach);
  try {
    return await followJob(client, jobId, json, bar);
  } finally {
    process.off("SIGINT", detach);
    bar.done();
  }
}

async function followJob(
  client: CoordinatorClient,
  jobId: string,
  json: boolean | undefined,
  bar: ProgressBar,
): Promise<JobSummary> {
  let last: JobSummary | undefined;
  let lastState = "";
  for await (const { job } of client.watchJob({ jobId })) {
    if (!job) continue;
    last = job;
    if (job.state !== lastState && !json) {
      bar.done();
      process.stderr.write(
        `${job.jobId} ${job.vmName}: ${job.state}${job.reason && !job.state.startsWith("running:") ? ` (${job.reason})` : ""}\n`,
      );
      lastState = job.state;
    }
    if (job.progress && !json)
      bar.update({
        bytesDone: Number(job.progress.bytesDone),
        bytesTotal: Number(job.progress.bytesTotal),
        rate: job.progress.rate,
        etaSeconds: job.progress.etaSeconds,
        phase: job.progress.phase,
      });
  }
  if (!last) throw new CairnError("protocol", `the coordinator sent nothing for job ${jobId}`);
  return last;
}

/** A backup's transfer path in short: "lan-free", "net:mover-1" (docs/transfer-paths.md §3). */
export function pathLabel(j: JobSummary): string {
  const t = j.transfer;
  if (!t?.path) return "";
  return t.path === "network" ? `net:${t.readerHostId}` : t.path;
}

/** One job in full, as `jobs show` prints it. */
function describeJob(j: JobSummary): string {
  const rows: [string, string][] = [
    ["job", j.jobId],
    ["kind", j.kind],
    [
      j.kind === "backup" || isRestoreJob(j.kind) ? "vm" : "repository",
      j.kind === "backup" || isRestoreJob(j.kind) ? `${j.vmName} (${j.vmUuid})` : j.repository,
    ],
    ["host", j.hostId],
    ["state", j.state],
    ["attempt", String(j.attempt)],
    ["reason", j.reason],
  ];
  if (j.kind === "backup") {
    rows.push(["repository", j.repository], ["mode", j.mode], ["policy", j.policy]);
    if (j.transfer?.path)
      rows.push(
        [
          "path",
          `${j.transfer.path}${j.transfer.path === "network" ? ` (reader ${j.transfer.readerHostId})` : ""}`,
        ],
        ["path reason", j.transfer.reason],
      );
    if (j.snapshotId) rows.push(["snapshot", j.snapshotId]);
  }
  if (isRestoreJob(j.kind))
    rows.push(["repository", j.repository], ["snapshot", j.snapshotId], ...restoreRows(j.restore));
  rows.push(["created", ago(j.createdMs)], ["updated", ago(j.updatedMs)]);
  return `${rows.map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`).join("\n")}\n`;
}

export function finish(job: JobSummary, json: boolean | undefined): void {
  output(json, job, () =>
    job.state === "succeeded" && isRestoreJob(job.kind)
      ? `job ${job.jobId} succeeded: ${job.kind} of ${job.snapshotId} on ${job.hostId}\n${restoreRows(
          job.restore,
        )
          .map(([k, v]) => `  ${k}: ${v}`)
          .join("\n")}\n`
      : job.state === "succeeded"
        ? `job ${job.jobId} succeeded: snapshot ${job.snapshotId} in ${job.repository} (${Object.entries(
            job.diskKinds,
          )
            .map(([d, k]) => `${d} ${k}`)
            .join(", ")})\n`
        : `job ${job.jobId} ${job.state}: ${job.reason}\n`,
  );
  if (job.state === "failed")
    throw new CairnError("failed-precondition", `job ${job.jobId} failed: ${job.reason}`);
  if (job.state === "cancelled") throw new CairnError("aborted", `job ${job.jobId} was cancelled`);
}

export function registerJobCommands(program: Command): void {
  const backup = program.command("backup").description("back up VMs through the coordinator");
  withConnectOptions(
    backup
      .command("now <vm>")
      .description("queue a backup of one VM now (name or uuid)")
      .option(
        "--policy <name>",
        "policy giving repository, quiesce, retention (default: the one selecting the VM)",
      )
      .option("--mode <mode>", "full | incremental | differential | copy | auto (default: the policy's next)")
      .option("--wait", "follow the job with progress until it ends"),
  ).action((vm: string, o: O & { policy?: string; mode?: string; wait?: boolean }) =>
    runCli(async () => {
      const mode = o.mode ? backupMode.toWire(backupMode.parse(o.mode, "--mode")) : undefined;
      const client = connectCoordinator(o);
      const { jobId } = await client.backupNow({
        vm,
        policy: o.policy ?? "",
        mode: mode ?? BackupMode.BACKUP_MODE_UNSPECIFIED,
      });
      if (!o.wait)
        return output(
          o.json,
          { jobId },
          () => `queued job ${jobId}; follow it with: cairn jobs watch ${jobId}\n`,
        );
      finish(await watchJob(client, jobId, o.json), o.json);
    }, o),
  );

  const jobs = program.command("jobs").description("backup, restore and repository maintenance jobs");
  withConnectOptions(
    jobs
      .command("list")
      .option("--state <state>", "active | queued | running | interrupted | succeeded | failed | cancelled")
      .option("--vm <vm>", "only this VM")
      .option("--limit <n>", "newest n", (v) => Number.parseInt(v, 10), 50),
  ).action((o: O & { state?: string; vm?: string; limit: number }) =>
    runCli(async () => {
      const r = await connectCoordinator(o).listJobs({
        state: o.state ?? "",
        vm: o.vm ?? "",
        limit: o.limit,
      });
      output(o.json, r.jobs, () =>
        table(
          ["JOB", "VM / REPOSITORY", "HOST", "PATH", "KIND", "STATE", "TRY", "CREATED", "PROGRESS", "REASON"],
          r.jobs.map((j) => [
            j.jobId,
            j.kind === "backup" || isRestoreJob(j.kind) ? j.vmName : `repo ${j.repository}`,
            j.hostId,
            pathLabel(j),
            j.kind === "backup" ? j.mode : j.kind,
            j.state,
            j.attempt,
            ago(j.createdMs),
            j.progress
              ? `${formatBytes(Number(j.progress.bytesDone))}/${formatBytes(Number(j.progress.bytesTotal))}`
              : "",
            j.reason.length > 60 ? `${j.reason.slice(0, 57)}...` : j.reason,
          ]),
        ),
      );
    }, o),
  );
  withConnectOptions(
    jobs.command("show <job-id>").description("one job: state, reason, and how its data travels"),
  ).action((jobId: string, o: O) =>
    runCli(async () => {
      // WatchJob answers with the job's current summary first: read that one and hang up.
      const stop = new AbortController();
      let job: JobSummary | undefined;
      try {
        for await (const r of connectCoordinator(o).watchJob({ jobId }, { signal: stop.signal })) {
          job = r.job;
          if (job) break;
        }
      } finally {
        stop.abort();
      }
      if (!job) throw new CairnError("protocol", `the coordinator sent nothing for job ${jobId}`);
      const shown = job;
      output(o.json, shown, () => describeJob(shown));
    }, o),
  );
  withConnectOptions(
    jobs.command("watch <job-id>").description("follow a job with progress until it ends"),
  ).action((jobId: string, o: O) =>
    runCli(async () => finish(await watchJob(connectCoordinator(o), jobId, o.json), o.json), o),
  );
  withConnectOptions(
    jobs.command("cancel <job-id>").description("abort a job; its cleanup still runs"),
  ).action((jobId: string, o: O) =>
    runCli(async () => {
      await connectCoordinator(o).cancelJob({ jobId });
      output(o.json, { cancelled: jobId }, () => `cancel requested for ${jobId}\n`);
    }, o),
  );
}
