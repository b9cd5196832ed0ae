import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { ObjectStore } from "../../../shared/src/repository/ports/ObjectStore.js";
import { readRepositoryConfig } from "../../../shared/src/repository/readRepositoryConfig.js";

/** Where probe objects live in a repository (docs/transfer-paths.md §2); nothing else reads them. */
export const PROBES_PREFIX = "probes/";

/** One location's probe, before the coordinator's name is attached. */
export interface LocationProbe {
  /** The repository's id from its config; "" when it could not be read. */
  repositoryId: string;
  location: string;
  reachable: boolean;
  /** Why not, in plain words; "" when reachable. */
  error: string;
  writeMiBs: number;
  readMiBs: number;
  /** When the probe ended (ms since the epoch). */
  probedMs: number;
}

export interface ProbeOptions {
  /** Names the probe object (`probes/<host>-<random>`), so a leftover says whose it was. */
  hostId: string;
  /** Random bytes written and read back. */
  bytes: number;
  /** The whole probe (open, write, read, delete) gives up after this long. */
  timeoutMs: number;
  signal: AbortSignal;
  /** How long deleting the probe object may take once the probe itself failed or timed out. */
  cleanupTimeoutMs?: number;
}

type Step =
  | "opening"
  | "reading the config of"
  | "writing a probe object to"
  | "reading the probe object back from";

/**
 * Probes one repository location (docs/transfer-paths.md §2): opens the store, reads the
 * repository's id from its config (no passphrase needed), writes `bytes` random bytes under
 * `probes/`, reads them back, compares and deletes them, timing the write and the read. Never
 * throws for the location's sake: an unreachable location is a result with the reason. The probe
 * object is deleted whatever happened once it may have been written. Throws CairnError("aborted")
 * only when the caller's signal fires.
 */
export async function probeLocation(
  location: string,
  openStore: (location: string) => ObjectStore,
  opts: ProbeOptions,
): Promise<LocationProbe> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([opts.signal, deadline]);
  let step: Step = "opening";
  let repositoryId = "";
  let store: ObjectStore | undefined;
  let written: string | undefined;
  /** The probe object's put, awaited (bounded) before cleanup so a late put cannot outlive the delete. */
  let putting: Promise<void> | undefined;
  const result = (r: Partial<LocationProbe>): LocationProbe => ({
    repositoryId,
    location,
    reachable: false,
    error: "",
    writeMiBs: 0,
    readMiBs: 0,
    probedMs: Date.now(),
    ...r,
  });
  try {
    return await untilAborted(signal, async () => {
      store = openStore(location);
      step = "reading the config of";
      const config = await readRepositoryConfig(store, signal);
      repositoryId = config.id;
      const data = randomBytes(opts.bytes);
      const key = `${PROBES_PREFIX}${keySegment(opts.hostId)}-${randomBytes(8).toString("hex")}`;
      step = "writing a probe object to";
      written = key;
      const t0 = performance.now();
      putting = store.put(key, data, { signal });
      await putting;
      const t1 = performance.now();
      step = "reading the probe object back from";
      const back = await store.get(key, { signal });
      const t2 = performance.now();
      if (!back.equals(data))
        throw new CairnError(
          "corrupt",
          `the probe object read back from ${location} differs from what was written (${back.length} of ${data.length} bytes came back)`,
        );
      await store.delete(key, { signal });
      written = undefined;
      return result({
        reachable: true,
        writeMiBs: mibPerSecond(data.length, t1 - t0),
        readMiBs: mibPerSecond(data.length, t2 - t1),
      });
    });
  } catch (e) {
    if (opts.signal.aborted) throw e;
    const error = deadline.aborted
      ? `no answer within ${formatSeconds(opts.timeoutMs)} while ${step} ${location}`
      : await reason(e, location, step);
    return result({ error });
  } finally {
    if (written && store) await deleteQuietly(store, written, putting, opts.cleanupTimeoutMs ?? 10_000);
  }
}

/** Runs `fn`, but gives up as soon as `signal` fires even if a store ignores it. */
async function untilAborted<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  signal.throwIfAborted();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new CairnError("aborted", "the probe was aborted", { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([fn(), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/** The probe object goes even after a failure; a leftover is named by host and harmless. */
async function deleteQuietly(
  store: ObjectStore,
  key: string,
  putting: Promise<void> | undefined,
  timeoutMs: number,
): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  await untilAborted(signal, async () => {
    await putting?.catch(() => {});
    await store.delete(key, { signal });
  }).catch(() => {});
}

/** Plain words for why a location is not reachable. */
async function reason(e: unknown, location: string, step: Step): Promise<string> {
  if (isCairnError(e, "not-found") && step === "reading the config of") {
    // A missing directory and a directory that holds no repository need different fixes.
    if (isLocalPath(location)) {
      const st = await stat(resolve(location)).catch(() => undefined);
      if (!st) return `${location} does not exist on this host`;
      if (!st.isDirectory()) return `${location} is not a directory`;
    }
    return `${location} is not a Cairn repository (it has no repository config)`;
  }
  const message = e instanceof CairnError ? e.message : e instanceof Error ? e.message : String(e);
  return message.includes(location) ? message : `${step} ${location} failed: ${message}`;
}

function isLocalPath(location: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(location);
}

/** A host id as one object-key segment (`[A-Za-z0-9._-]`, not starting with a dot). */
function keySegment(hostId: string): string {
  const s = hostId.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return s || "host";
}

function mibPerSecond(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (Math.max(ms, 0.001) / 1000);
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
