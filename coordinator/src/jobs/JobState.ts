import { CairnError } from "../../../shared/src/errors/CairnError.js";

/**
 * A coordinator job's lifecycle. `interrupted` means the coordinator lost sight of a running job
 * (agent lost, stream broken, coordinator restarted): the agent may still finish it, so it is
 * reconciled with the agent before anything is retried — never run twice.
 */
export type JobState = "queued" | "running" | "interrupted" | "succeeded" | "failed" | "cancelled";

export const JOB_STATES: readonly JobState[] = [
  "queued",
  "running",
  "interrupted",
  "succeeded",
  "failed",
  "cancelled",
];

const LEGAL: Record<JobState, readonly JobState[]> = {
  queued: ["running", "cancelled", "failed"],
  // running → queued: a transient failure, retried after a backoff.
  running: ["succeeded", "failed", "interrupted", "queued", "cancelled"],
  // interrupted → running: re-attached to (or re-run by) the agent under the same job id.
  interrupted: ["running", "queued", "succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(s: JobState): boolean {
  return LEGAL[s].length === 0;
}

export function isActive(s: JobState): boolean {
  return s === "running" || s === "interrupted";
}

/** Throws on an illegal transition: a bug or a race, never something to paper over. */
export function assertTransition(jobId: string, from: JobState, to: JobState): void {
  if (!LEGAL[from].includes(to))
    throw new CairnError("failed-precondition", `job ${jobId}: illegal transition ${from} → ${to}`);
}
