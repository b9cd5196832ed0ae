import { CairnError } from "../../../shared/src/errors/CairnError.js";

// Coordinator ids are "job-<time>-<hex>", local ones "local-<base36>": letters, digits, ".", "_",
// "-", bounded, never "..": a job id names the job's work directory, removed recursively at its end.
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A job id from the wire, before it reaches a path ("invalid-argument" names it). */
export function checkJobId(jobId: string): void {
  if (!JOB_ID.test(jobId) || jobId.includes(".."))
    throw new CairnError("invalid-argument", `job_id ${JSON.stringify(jobId)} is not allowed`, {
      hint: "job ids are letters, digits, '.', '_' and '-', at most 128, not starting with one of '.', '_', '-', without '..'",
    });
}
