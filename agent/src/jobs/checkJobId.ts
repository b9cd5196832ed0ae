import { relative, resolve, sep } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";

// Coordinator ids are "job-<time>-<hex>", local ones "local-<base36>": letters, digits, ".", "_",
// "-", bounded, never "..": a job id names the job's work directory, removed recursively at its end.
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A job id from the wire, checked at the gRPC edge of every RPC that takes one ("invalid-argument"). */
export function checkJobId(jobId: string): string {
  if (!jobId.trim()) throw new CairnError("invalid-argument", "job_id is required");
  if (!JOB_ID.test(jobId) || jobId.includes(".."))
    throw new CairnError("invalid-argument", `job_id ${JSON.stringify(jobId)} is not allowed`, {
      hint: "job ids are letters, digits, '.', '_' and '-', at most 128, not starting with one of '.', '_', '-', without '..'",
    });
  return jobId;
}

/**
 * A job's work directory under `workDir/jobs`: the id is checked again and the result must stay
 * inside, so a path built from an id that slipped past the edge cannot name another directory.
 */
export function jobDirOf(workDir: string, jobId: string): string {
  checkJobId(jobId);
  const base = resolve(workDir, "jobs");
  const dir = resolve(base, jobId);
  const rel = relative(base, dir);
  if (!rel || rel.startsWith("..") || rel.includes(sep))
    throw new CairnError("invalid-argument", `job_id ${JSON.stringify(jobId)} leaves ${base}`);
  return dir;
}
