import net from "node:net";
import { abortError, CairnError } from "../errors/CairnError.js";

/** Where an NBD server listens. TCP targets are expected to use TLS outside loopback tests. */
export type NbdTarget = { path: string } | { host: string; port: number };

export function describeTarget(t: NbdTarget): string {
  return "path" in t ? `nbd+unix://?socket=${t.path}` : `nbd://${t.host}:${t.port}`;
}

/** Size of the one receive buffer reused for every read when `onread` is given. */
const RECV_BUFFER = 1024 * 1024;

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
  onread?: (chunk: Buffer) => void,
): Promise<net.Socket> {
  const peer = describeTarget(target);
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, `connecting to ${peer}`));
    const reuse = onread
      ? {
          onread: {
            buffer: Buffer.allocUnsafe(RECV_BUFFER),
            callback: (n: number, buf: Uint8Array) => {
              onread(Buffer.from(buf.buffer, buf.byteOffset, n));
              return true;
            },
          },
        }
      : {};
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
