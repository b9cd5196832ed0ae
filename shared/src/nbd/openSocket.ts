import net from "node:net";
import { abortError, CairnError } from "../errors/CairnError.js";

/** Where an NBD server listens. TCP targets are expected to use TLS outside loopback tests. */
export type NbdTarget = { path: string } | { host: string; port: number };

export function describeTarget(t: NbdTarget): string {
  return "path" in t ? `nbd+unix://?socket=${t.path}` : `nbd://${t.host}:${t.port}`;
}

/** Receives socket data read into a reused buffer (see openSocket). */
export interface ReadRouter {
  /** Bytes read into the shared buffer; only valid during the call. */
  chunk(b: Buffer): void;
  /** Where the next read should land instead of the shared buffer, if anywhere. */
  target?(): Buffer | undefined;
  /** `n` bytes were read straight into the buffer `target()` returned. */
  landed?(n: number): void;
  /** True when the next read should be short (SMALL_READ): only a reply header is wanted. */
  small?(): boolean;
}

/** A short read: a reply header and the start of its payload, the rest then lands directly. */
const SMALL_READ = 4096;

/** Size of the one receive buffer reused for every read when `onread` is given. */
const RECV_BUFFER = 1024 * 1024;

/** Node's `onread` option for a router: one reused buffer, or the router's direct target. */
export function onreadFor(router: ReadRouter): {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Uint8Array) => boolean;
} {
  const shared = Buffer.allocUnsafe(RECV_BUFFER);
  const small = shared.subarray(0, SMALL_READ);
  // Node asks for the next read's buffer after each read: usually the shared one, but while a
  // large read payload is pending the router may return the destination itself (zero-copy).
  return {
    buffer: () => router.target?.() ?? (router.small?.() ? small : shared),
    callback: (n, buf) => {
      if (buf === shared || buf === small) router.chunk(shared.subarray(0, n));
      else router.landed?.(n);
      return true;
    },
  };
}

/**
 * Connects a plain socket, failing with "unavailable", "timeout" or "aborted" — never hanging.
 * With `onread`, the socket reads into one reused buffer and hands each chunk to `onread` (no
 * 'data' events): at GiB/s a fresh 64 KiB buffer per read made garbage collection the main cost.
 * The chunk is only valid during the call.
 */
export function openSocket(
  target: NbdTarget,
  timeoutMs: number,
  signal?: AbortSignal,
  onread?: ReadRouter,
): Promise<net.Socket> {
  const peer = describeTarget(target);
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, `connecting to ${peer}`));
    const reuse = onread ? { onread: onreadFor(onread) } : {};
    const socket =
      "path" in target
        ? net.connect({ path: target.path, ...reuse })
        : net.connect({ port: target.port, host: target.host, ...reuse });
    const cleanup = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      socket.off("connect", onConnect);
    };
    const onConnect = () => {
      cleanup();
      if ("host" in target) socket.setNoDelay(true);
      resolve(socket);
    };
    const onError = (e: Error) => {
      cleanup();
      socket.destroy();
      reject(
        new CairnError("unavailable", `cannot connect to NBD server ${peer}: ${e.message}`, {
          cause: e,
          hint: "check that the NBD server (qemu-nbd, libvirt backup job, nbdkit) is running",
        }),
      );
    };
    const onAbort = () => {
      cleanup();
      socket.destroy();
      reject(abortError(signal!, `connecting to ${peer}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(new CairnError("timeout", `connecting to NBD server ${peer} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
