import type { MetricsRegistry } from "../../../shared/src/metrics/MetricsRegistry.js";
import type { JobState } from "../jobs/JobState.js";
import type { JobRecord } from "../store/records.js";

/** The coordinator's Prometheus metrics; one place that knows their names. */
export class CoordinatorMetrics {
  readonly heartbeats;
  readonly events;
  private readonly hostEvents;
  private readonly transitions;
  private readonly failures;
  private readonly bytesRead;
  private readonly bytesStored;
  private readonly durations;
  private readonly freeze;
  private readonly schedulePass;
  private readonly reconciles;
  private readonly reconcileSeconds;

  constructor(
    readonly registry: MetricsRegistry,
    jobsByState: () => Record<string, number>,
  ) {
    this.heartbeats = registry.counter("cairn_agent_heartbeats_total", "Heartbeats received from agents", []);
    this.events = registry.counter("cairn_domain_events_total", "Domain events received from agents", []);
    this.hostEvents = registry.counter("cairn_host_events_total", "Agent registrations, returns and losses", [
      "kind",
    ]);
    this.transitions = registry.counter(
      "cairn_job_transitions_total",
      "Job state transitions, by job kind (backup or a maintenance task)",
      ["kind", "to"],
    );
    this.failures = registry.counter(
      "cairn_job_failures_total",
      "Failed, interrupted or retried jobs by reason",
      ["state", "reason"],
    );
    this.bytesRead = registry.counter(
      "cairn_backup_bytes_read_total",
      "Bytes read from VM disks by backups",
      [],
    );
    this.bytesStored = registry.counter(
      "cairn_backup_bytes_stored_total",
      "Bytes written to repositories by backups",
      [],
    );
    this.durations = registry.histogram(
      "cairn_job_duration_seconds",
      "Duration of successful backup jobs",
      [],
      [1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    );
    this.freeze = registry.histogram(
      "cairn_freeze_window_seconds",
      "Time guests spent frozen (fsfreeze) per backup",
      [],
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    this.schedulePass = registry.histogram(
      "cairn_schedule_pass_seconds",
      "Duration of scheduling passes",
      [],
      [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5],
    );
    this.reconciles = registry.counter(
      "cairn_ledger_reconciliations_total",
      "Checkpoint ledger reconciliations with a host's libvirt, by outcome (kept, demoted, skipped)",
      ["outcome"],
    );
    this.reconcileSeconds = registry.histogram(
      "cairn_ledger_reconcile_seconds",
      "Time from the event that asked for a reconciliation (a VM starting on another host) to its end",
      [],
      [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    );
    const g = registry.gauge("cairn_jobs", "Jobs by state", ["state"]);
    g.collect?.(() => {
      for (const [state, n] of Object.entries(jobsByState())) g.set({ state }, n);
    });
  }

  ledgerReconciled(r: { skipped?: string; demoted: unknown[]; sinceMs: number }, nowMs: number): void {
    this.reconciles.inc({ outcome: r.skipped ? "skipped" : r.demoted.length ? "demoted" : "kept" });
    if (!r.skipped && r.sinceMs > 0) this.reconcileSeconds.observe({}, Math.max(0, nowMs - r.sinceMs) / 1000);
  }

  hostEvent(kind: "registered" | "returned" | "lost"): void {
    this.hostEvents.inc({ kind });
  }

  jobTransition(job: JobRecord, _from: JobState): void {
    this.transitions.inc({ kind: job.kind, to: job.state });
    if (job.state === "failed" || job.state === "interrupted" || (job.state === "queued" && job.attempt > 1))
      this.failures.inc({ state: job.state, reason: reasonClass(job.reason) });
  }

  jobSucceeded(job: JobRecord, bytesRead: number, bytesStored: number, freezeMs: number): void {
    this.bytesRead.inc({}, bytesRead);
    this.bytesStored.inc({}, bytesStored);
    if (job.startedMs && job.finishedMs) this.durations.observe({}, (job.finishedMs - job.startedMs) / 1000);
    if (freezeMs > 0) this.freeze.observe({}, freezeMs / 1000);
  }

  schedulePassSeconds(s: number): void {
    this.schedulePass.observe({}, s);
  }
}

/** A bounded label: the first words of a reason, without ids or numbers. */
export function reasonClass(reason: string): string {
  const r = reason.toLowerCase();
  if (r.includes("lost")) return "agent-lost";
  if (r.includes("coordinator restarted") || r.includes("coordinator stopping")) return "coordinator-restart";
  if (r.includes("freeze") || r.includes("guest agent")) return "quiesce";
  if (r.includes("repository")) return "repository";
  if (r.includes("shut") || r.includes("not running")) return "vm-state";
  if (r.includes("busy") || r.includes("already has job")) return "busy";
  return "other";
}
