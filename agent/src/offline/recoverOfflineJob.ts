import { readdir, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { abortError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { JobRecord, OfflineJournal } from "../backup/jobRecord.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { bitmapOps, imageInfo } from "../image/qemuImg.js";

export interface RecoveredOfflineJob {
  /** qemu-nbd processes ended (pids). */
  endedExports: number[];
  /** "image:bitmap" removed again. */
  removedBitmaps: string[];
  /** Checkpoint metadata dropped from libvirt (the attempt did not seal). */
  removedCheckpoint: string | null;
}

/**
 * Undoes what an offline backup whose process died left behind, from its journal (written before
 * each change): ends its qemu-nbd exports (an orphan `--persistent` qemu-nbd holds the image lock,
 * so the VM could not start), drops the checkpoint metadata it redefined and removes the bitmaps it
 * added, unless it sealed (then only the temporary export bitmaps go). Each step is idempotent: a
 * recovery interrupted in turn is simply run again. Throws when an image is now in use (the VM was
 * started): the caller keeps the record and retries.
 */
export async function recoverOfflineJob(
  deps: { hypervisor: Hypervisor; log: Logger },
  rec: JobRecord & { offline: OfflineJournal },
  signal: AbortSignal,
): Promise<RecoveredOfflineJob> {
  const out: RecoveredOfflineJob = { endedExports: [], removedBitmaps: [], removedCheckpoint: null };
  for (const e of rec.offline.exports) {
    for (const pid of await qemuNbdServing(e.socket, e.pid)) {
      await endProcess(pid, signal);
      out.endedExports.push(pid);
    }
  }
  const cp = rec.offline.redefined;
  if (cp && !rec.sealed) {
    try {
      const exists = (await deps.hypervisor.listCheckpoints(rec.domain, signal)).some((c) => c.name === cp);
      if (exists) {
        await deps.hypervisor.deleteCheckpoint(rec.domain, cp, { metadataOnly: true }, signal);
        out.removedCheckpoint = cp;
      }
    } catch (err) {
      if (!isCairnError(err, "not-found")) throw err; // the domain is gone: nothing to drop
    }
  }
  for (const b of [...rec.offline.addedBitmaps].reverse()) {
    if (!b.temporary && rec.sealed) continue;
    // Without -U: an image a QEMU holds again is not ours to change (the error keeps the record).
    const info = await imageInfo(b.image, signal).catch((err) => {
      if (isCairnError(err, "failed-precondition") && err.details?.deferred) throw err;
      return undefined; // the image is gone or unreadable: nothing to undo there
    });
    if (!info?.bitmaps.some((x) => x.name === b.bitmap)) continue;
    await bitmapOps(b.image, b.bitmap, ["--remove"], signal);
    out.removedBitmaps.push(`${b.image}:${b.bitmap}`);
  }
  return out;
}

/**
 * The qemu-nbd processes serving `socket`: the recorded pid when /proc confirms it is that
 * qemu-nbd (a pid may have been reused), else any qemu-nbd whose command line names the socket
 * (the agent died between starting it and recording its pid).
 */
async function qemuNbdServing(socket: string, recorded: number | null): Promise<number[]> {
  if (recorded && (await isQemuNbdFor(recorded, socket))) return [recorded];
  const pids = (await readdir("/proc").catch(() => [] as string[]))
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
  const out: number[] = [];
  for (const pid of pids) if (await isQemuNbdFor(pid, socket)) out.push(pid);
  return out;
}

/**
 * A qemu-nbd serving `socket` (-k), or, for a network export (TCP, no socket), one reading its TLS
 * credentials from the same job's directory (`dir=<jobDir>/tls`): the socket path journalled for a
 * disk is always in its job's directory.
 */
async function isQemuNbdFor(pid: number, socket: string): Promise<boolean> {
  const argv = await readFile(`/proc/${pid}/cmdline`, "utf8")
    .then((s) => s.split("\0"))
    .catch(() => [] as string[]);
  if (basename(argv[0] ?? "") !== "qemu-nbd") return false;
  const k = argv.indexOf("-k");
  if (k > 0 && argv[k + 1] === socket) return true;
  const tlsDir = `dir=${join(dirname(socket), "tls")}`;
  return argv.some((a) => a.startsWith("tls-creds-x509,") && a.split(",").includes(tlsDir));
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone (or a zombie: no locks left). */
async function endProcess(pid: number, signal: AbortSignal): Promise<void> {
  const gone = async () => {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    return stat === "" || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  };
  const send = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // already gone
    }
  };
  send("SIGTERM");
  const start = Date.now();
  let killed = false;
  while (!(await gone())) {
    if (signal.aborted) throw abortError(signal, `ending qemu-nbd ${pid}`);
    if (!killed && Date.now() - start > 5_000) {
      send("SIGKILL");
      killed = true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
