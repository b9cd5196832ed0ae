import { setMaxListeners } from "node:events";
import { abortError, CairnError, isCairnError } from "../../errors/CairnError.js";
import type { RestorePointReader } from "../RestorePointReader.js";
import { destinationState } from "./destinationState.js";
import { openRestoreTarget } from "./openRestoreTarget.js";
import { planRestoreTarget, type RestoreFormat, type RestoreTargetPlan } from "./planRestoreTarget.js";
import type { Qcow2Options } from "./Qcow2FileTarget.js";
import type { RestoreTarget } from "./RestoreTarget.js";

export interface RestoreDiskOptions {
  format: string;
  /** Replace an existing regular file, or write over a block device. */
  force?: boolean;
  signal?: AbortSignal;
  /** Chunks read from the repository and written at once (default 16). */
  concurrency?: number;
  /** The caller's name for the destination, for messages ("--to"). */
  destinationFlag?: string;
  qcow2?: Qcow2Options;
  /**
   * Told the bytes of the disk done so far (data written plus zero runs handled) out of its
   * virtual size, at most every `progressIntervalMs` and once at the end; never throws into the
   * restore (a failing callback is the caller's bug, not the disk's).
   */
  onProgress?: (done: number, total: number) => void;
  /** Default 500 ms. */
  progressIntervalMs?: number;
}

export interface RestoreDiskResult {
  path: string;
  kind: RestoreTargetPlan["kind"];
  format: RestoreFormat;
  /** Bytes of data chunks written. */
  dataBytes: number;
  /** Bytes written as zeros (a block device that did not read back zeros there). */
  zeroBytesWritten: number;
  /** Bytes of zero runs left untouched because the target already reads zeros there. */
  zeroBytesSkipped: number;
}

/** Zero runs are handed to the target in pieces of at most this, so they spread over the workers. */
const ZERO_RUN_PIECE = 8 * 1024 * 1024;

/**
 * Writes one disk of a restore point to `destination` (a new or replaced file, raw or qcow2, or a
 * block device; see planRestoreTarget). Only chunks that hold data are read and written, several at
 * once; zero runs are left to the target (holes in files, compared first on devices). On failure
 * or abort, a new file is removed and a replaced one left as it was; a block device keeps what was
 * written and the error says it is partial.
 */
export async function restoreDisk(
  reader: RestorePointReader,
  destination: string,
  o: RestoreDiskOptions,
): Promise<RestoreDiskResult> {
  const signal = o.signal ?? new AbortController().signal;
  const plan = planRestoreTarget(
    destination,
    await destinationState(destination),
    o.format,
    !!o.force,
    o.destinationFlag,
  );
  if (signal.aborted) throw abortError(signal, `restore to ${destination}`);
  const target = await openRestoreTarget(destination, plan, reader.virtualSize, signal, o.qcow2);
  const result: RestoreDiskResult = {
    path: destination,
    kind: plan.kind,
    format: plan.format,
    dataBytes: 0,
    zeroBytesWritten: 0,
    zeroBytesSkipped: 0,
  };
  try {
    await writeRuns(reader, target, result, o.concurrency ?? 16, signal, progressOf(o, reader.virtualSize));
    if (signal.aborted) throw abortError(signal, `restore to ${destination}`);
    await target.commit(signal);
    report(o, reader.virtualSize, reader.virtualSize);
    return result;
  } catch (e) {
    await target.discard().catch(() => {});
    throw plan.kind === "block-device" ? partial(e, destination, result) : e;
  }
}

type Job = { data: true; chunk: number } | { data: false; offset: number; length: number };

/** Workers pull jobs in disk order; the first failure stops the others, and all settle before it is thrown. */
async function writeRuns(
  reader: RestorePointReader,
  target: RestoreTarget,
  result: RestoreDiskResult,
  concurrency: number,
  signal: AbortSignal,
  progress: (done: number) => void,
): Promise<void> {
  const jobs = plan(reader);
  // One listener on the caller's signal rather than AbortSignal.any: with it, raw restores measured
  // 0.3-0.5 s/GiB slower than the old loop; without, the same (docs/field-notes.md, "Disk restore").
  const stop = new AbortController();
  const forward = () => stop.abort(signal.reason);
  signal.addEventListener("abort", forward, { once: true });
  const inner = stop.signal;
  // Each worker's read and write listen on it at once (the NBD client's per connection too).
  setMaxListeners(4 * concurrency + 16, inner);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length && !inner.aborted) {
      const job = jobs[next++]!;
      if (job.data) {
        const data = await reader.fetchChunk(job.chunk, inner);
        if (inner.aborted || !data) return;
        await target.writeData(job.chunk * reader.chunkSize, data, inner);
        result.dataBytes += data.length;
      } else {
        const written = await target.ensureZero(job.offset, job.length, inner);
        result.zeroBytesWritten += written;
        result.zeroBytesSkipped += job.length - written;
      }
      progress(result.dataBytes + result.zeroBytesWritten + result.zeroBytesSkipped);
    }
  };
  const settled = await Promise.allSettled(
    Array.from({ length: Math.max(1, concurrency) }, () =>
      worker().catch((e: unknown) => {
        stop.abort();
        throw e;
      }),
    ),
  );
  signal.removeEventListener("abort", forward);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (signal.aborted) throw abortError(signal, `restore to ${target.path}`);
  if (failed) throw failed.reason;
}

/** A throttled progress reporter for writeRuns (a no-op without onProgress). */
function progressOf(o: RestoreDiskOptions, total: number): (done: number) => void {
  if (!o.onProgress) return () => {};
  const every = o.progressIntervalMs ?? 500;
  let last = 0;
  return (done) => {
    const now = Date.now();
    if (now - last < every) return;
    last = now;
    report(o, done, total);
  };
}

function report(o: RestoreDiskOptions, done: number, total: number): void {
  try {
    o.onProgress?.(done, total);
  } catch {
    // A progress sink's failure never fails the disk (see onProgress).
  }
}

function plan(reader: RestorePointReader): Job[] {
  const jobs: Job[] = [];
  const cs = reader.chunkSize;
  for (const run of reader.allocation()) {
    if (!run.zero) {
      for (let at = run.offset; at < run.offset + run.length; at += cs)
        jobs.push({ data: true, chunk: at / cs });
      continue;
    }
    for (let at = run.offset; at < run.offset + run.length; at += ZERO_RUN_PIECE)
      jobs.push({ data: false, offset: at, length: Math.min(ZERO_RUN_PIECE, run.offset + run.length - at) });
  }
  return jobs;
}

function partial(e: unknown, path: string, r: RestoreDiskResult): CairnError {
  const done = r.dataBytes + r.zeroBytesWritten + r.zeroBytesSkipped;
  return new CairnError(
    isCairnError(e) ? e.code : "internal",
    `restore to block device ${path} stopped part-way (${done} bytes of the disk done): the device now holds a partial disk`,
    {
      cause: e,
      hint: `${isCairnError(e) ? e.userMessage : String(e)}; restore to it again before using it`,
    },
  );
}
