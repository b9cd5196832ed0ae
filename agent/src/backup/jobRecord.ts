import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";

/** Written into a job's work directory so an agent restarted after a crash can clean up after it. */
export interface JobRecord {
  jobId: string;
  domain: string;
  /** Checkpoint this attempt creates (null for copy backups). */
  checkpoint: string | null;
  /** True once the snapshot is sealed: the checkpoint then belongs to a restore point. */
  sealed: boolean;
  pid: number;
}

export async function writeJobRecord(jobDir: string, record: JobRecord): Promise<void> {
  const path = join(jobDir, "job.json");
  const fh = await open(`${path}.tmp`, "w", 0o600);
  try {
    await fh.writeFile(JSON.stringify(record));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(`${path}.tmp`, path);
}

export async function readJobRecord(jobDir: string): Promise<JobRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(jobDir, "job.json"), "utf8")) as JobRecord;
  } catch {
    return undefined;
  }
}
