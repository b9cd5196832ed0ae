import { MetricsRegistry } from "../../../shared/src/metrics/MetricsRegistry.js";
import { startMetricsServer } from "../../../shared/src/metrics/startMetricsServer.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";
import type { JobOutcome } from "../server/runBackupRpc.js";

/** The agent's Prometheus metrics: jobs by outcome and failure reason, bytes, durations, freeze window. */
export class AgentMetrics {
  readonly registry = new MetricsRegistry();
  private readonly jobs = this.registry.counter(
    "cairn_agent_jobs_total",
    "Backup jobs that ended here, by outcome",
    ["outcome", "reason"],
  );
  private readonly bytesRead = this.registry.counter(
    "cairn_agent_bytes_read_total",
    "Bytes read from VM disks",
    [],
  );
  private readonly bytesStored = this.registry.counter(
    "cairn_agent_bytes_stored_total",
    "Bytes written to repositories",
    [],
  );
  private readonly duration = this.registry.histogram(
    "cairn_agent_job_duration_seconds",
    "Duration of successful backup jobs",
    [],
    [1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
  );
  private readonly freeze = this.registry.histogram(
    "cairn_agent_freeze_window_seconds",
    "Time guests spent frozen per backup",
    [],
    [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );

  constructor(jobs: JobRegistry) {
    const running = this.registry.gauge("cairn_agent_running_jobs", "Backup jobs running on this agent", []);
    running.collect(() => running.set({}, jobs.runningJobIds().length));
  }

  jobEnded(o: JobOutcome): void {
    this.jobs.inc({ outcome: o.ok ? "succeeded" : "failed", reason: o.ok ? "" : (o.failure ?? "internal") });
    if (!o.ok) return;
    this.bytesRead.inc({}, o.bytesRead);
    this.bytesStored.inc({}, o.bytesStored);
    this.duration.observe({}, o.durationMs / 1000);
    if (o.freezeMs !== undefined) this.freeze.observe({}, o.freezeMs / 1000);
  }

  serve(listen: string) {
    return startMetricsServer({ listen, registry: this.registry });
  }
}
