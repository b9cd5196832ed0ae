import http2 from "node:http2";
import { setDefaultHighWaterMark } from "node:stream";

/** HTTP/2 per-stream receive window of the coordinator's gRPC server (the default is 64 KiB). */
export const STREAM_WINDOW_BYTES = 16 * 1024;

/**
 * Process-wide tuning for the coordinator daemon, which holds a stream or two open per agent.
 * Under a fleet-wide event flood, what each of 1,000 streams may buffer is what the heap holds:
 * - grpc-js decodes 16 messages ahead of a streaming handler by default (an object-mode Readable);
 *   two keep every stream busy, since EventSink batches across streams.
 * - every HTTP/2 stream may have 64 KiB in flight that nobody has read yet; 16 KiB still carries
 *   events and heartbeats at loopback and LAN speeds (backup data never flows through here).
 * grpc-js has no server option for the HTTP/2 window, and creates its server inside listen(), so
 * node:http2's server factories get the setting. Call once, before the gRPC server starts.
 */
export function applyDaemonDefaults(): void {
  setDefaultHighWaterMark(true, 2);
  const secure = http2.createSecureServer;
  const plain = http2.createServer;
  const withWindow = (o: http2.ServerOptions | undefined): http2.ServerOptions => ({
    ...o,
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, ...o?.settings },
  });
  http2.createSecureServer = ((o: http2.SecureServerOptions, ...rest: unknown[]) =>
    (secure as (...a: unknown[]) => http2.Http2SecureServer)(withWindow(o), ...rest)) as typeof secure;
  http2.createServer = ((o: http2.ServerOptions, ...rest: unknown[]) =>
    (plain as (...a: unknown[]) => http2.Http2Server)(withWindow(o), ...rest)) as typeof plain;
}
