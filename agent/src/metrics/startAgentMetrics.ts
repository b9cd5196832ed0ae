import { MetricsRegistry } from "../../../shared/src/metrics/MetricsRegistry.js";
import { startMetricsServer } from "../../../shared/src/metrics/startMetricsServer.js";
import type { JobRegistry } from "../jobs/JobRegistry.js";

/** The agent's Prometheus endpoint: running jobs plus process metrics. */
export async function startAgentMetrics(listen: string, jobs: JobRegistry) {
  const registry = new MetricsRegistry();
  const running = registry.gauge("cairn_agent_running_jobs", "Backup jobs running on this agent", []);
  running.collect?.(() => running.set({}, jobs.runningJobIds().length));
  return startMetricsServer({ listen, registry });
}
