import { randomInt } from "node:crypto";
import { createServer } from "node:net";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";

/** QEMU's, qemu-nbd's and Node's words for a port someone else holds. */
export const ADDRESS_IN_USE = /Address already in use|EADDRINUSE/i;

/** Ports of this process between their probe and the listener that takes them (or their release). */
const starting = new Set<number>();

/**
 * Runs `start(port)` with a free port of [min, max] on `host` (transfer.portMin..portMax): the
 * export's listener (libvirt's NBD server or qemu-nbd). A probe bind skips ports that are busy now;
 * a listener that still loses the race (another process bound it meanwhile) fails with "Address
 * already in use" and the next port is tried. Other failures are the caller's. Ports are tried
 * from a random point so concurrent agents rarely collide.
 */
export async function withExportPort<T>(
  range: { host: string; min: number; max: number },
  start: (port: number) => Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  const span = range.max - range.min + 1;
  if (!Number.isInteger(span) || span < 1) {
    throw new CairnError("invalid-argument", `export port range ${range.min}-${range.max} is empty`);
  }
  const first = randomInt(span);
  let lost = 0;
  for (let i = 0; i < span; i++) {
    if (signal.aborted) throw abortError(signal, "finding an export port");
    const port = range.min + ((first + i) % span);
    if (starting.has(port) || !(await canBind(range.host, port))) continue;
    starting.add(port);
    try {
      return await start(port);
    } catch (e) {
      if (!ADDRESS_IN_USE.test(String((e as Error)?.message ?? e))) throw e;
      lost++;
    } finally {
      starting.delete(port);
    }
  }
  throw new CairnError(
    "resource-exhausted",
    `no free export port in ${range.min}-${range.max} on ${range.host}${lost ? ` (${lost} lost to other listeners)` : ""}`,
    { hint: "widen transfer.portMin..portMax or wait for running exports to end" },
  );
}

/**
 * A free port of [min, max] on `host`, held for this process until release(): for libvirt's pull
 * backup, whose port is written into the backup XML before the guest is frozen, so a lost race
 * cannot be retried with another port inside the freeze window. Other processes are kept off by
 * the probe bind only; such a race fails the job, which is retried.
 */
export async function reserveExportPort(
  range: { host: string; min: number; max: number },
  signal: AbortSignal,
): Promise<{ port: number; release(): void }> {
  let held: { port: number; release(): void } | undefined;
  await withExportPort(
    range,
    async (port) => {
      // Claimed again: withExportPort forgets it when this returns.
      held = { port, release: () => void starting.delete(port) };
    },
    signal,
  );
  const h = held as { port: number; release(): void };
  starting.add(h.port);
  return h;
}

/** Whether a listener could bind host:port right now (closed again at once). */
export function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}
