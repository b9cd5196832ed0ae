import { readFileSync } from "node:fs";
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
  /**
   * The owner's start time (/proc/PID/stat field 22), filled in by writeJobRecord: a pid reused by
   * another process after the owner died does not keep the job's leftovers alive.
   */
  pidStart?: number;
  /** What an offline backup changed, each entry written before the change it names. */
  offline?: OfflineJournal;
}

/** The offline path's durable undo log (see offline/recoverOfflineJob.ts). */
export interface OfflineJournal {
  /** Bitmaps added to images; temporary ones go whatever happens, the others unless sealed. */
  addedBitmaps: { image: string; bitmap: string; temporary: boolean }[];
  /** qemu-nbd exports: the socket before the start, the pid once started. */
  exports: { socket: string; pid: number | null }[];
  /** Checkpoint metadata redefined in libvirt (dropped again unless sealed). */
  redefined: string | null;
}

export async function writeJobRecord(jobDir: string, record: JobRecord): Promise<void> {
  const path = join(jobDir, "job.json");
  const full: JobRecord =
    record.pid === process.pid && record.pidStart === undefined
      ? { ...record, ...withStart(processStartTime(process.pid)) }
      : record;
  const fh = await open(`${path}.tmp`, "w", 0o600);
  try {
    await fh.writeFile(JSON.stringify(full));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(`${path}.tmp`, path);
  // The rename is durable only once the directory is: recovery must see the entry written before a change.
  const dh = await open(jobDir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export async function readJobRecord(jobDir: string): Promise<JobRecord | undefined> {
  try {
    return JSON.parse(await readFile(join(jobDir, "job.json"), "utf8")) as JobRecord;
  } catch {
    return undefined;
  }
}

/**
 * True while the process that wrote the record runs: its pid exists and, when the record has it,
 * started at the same time (a reused pid is another process).
 */
export function ownerAlive(rec: Pick<JobRecord, "pid" | "pidStart">): boolean {
  if (!Number.isInteger(rec.pid) || rec.pid <= 0) return false;
  try {
    process.kill(rec.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (rec.pidStart === undefined) return true;
  const start = processStartTime(rec.pid);
  return start === undefined || start === rec.pidStart;
}

/** Start time of a process in clock ticks since boot, or undefined where /proc does not say. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may hold spaces and parentheses: count fields after its closing ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const v = Number(fields[19]); // field 22 overall; fields[0] is field 3
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function withStart(start: number | undefined): { pidStart?: number } {
  return start === undefined ? {} : { pidStart: start };
}
