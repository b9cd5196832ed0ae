import net from "node:net";
import tls from "node:tls";
import { CairnError } from "../errors/CairnError.js";
import type { BlockDevice } from "./BlockDevice.js";
import { ByteReader } from "./ByteReader.js";
import type { HandshakeIo } from "./ClientHandshake.js";
import {
  DEFAULT_MAX_PAYLOAD,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from "./constants.js";
import type { NbdTarget } from "./openSocket.js";
import { type NbdRequest, RequestParser } from "./RequestParser.js";
import { type ExportDescription, serverHandshake } from "./ServerHandshake.js";
import { Transmission } from "./ServerTransmission.js";

export interface NbdServerTls {
  key: string | Buffer;
  cert: string | Buffer;
  /** When set, clients must present a certificate signed by this CA. */
  ca?: string | Buffer;
}

export interface NbdServerOptions {
  /** Export name → device. Most callers serve one device as "". */
  exports: Record<string, BlockDevice>;
  /** Advertised through NBD_INFO_BLOCK_SIZE; larger requests are refused. Default 32 MiB. */
  maxPayload?: number;
  /** x509 credentials; when set, clients must STARTTLS before anything else. */
  tls?: NbdServerTls;
  /**
   * TCP without TLS is refused unless this is set, and even then only on loopback addresses:
   * it exists for tests against tools that cannot do TLS.
   */
  allowPlaintextLoopback?: boolean;
  /** Clients that do not finish the handshake in time are dropped. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Requests processed concurrently per connection before we stop reading from it. Default 16. */
  maxInflightPerConnection?: number;
  /** Called with errors that end a connection (protocol violations, device failures). */
  onConnectionError?: (e: unknown) => void;
}

/**
 * NBD server: fixed newstyle, structured replies, base:allocation, optional STARTTLS.
 * Serves BlockDevice ports (see BlockDevice.ts) over a unix socket or TCP.
 */
export class NbdServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly connections = new Set<Transmission>();
  private readonly descriptions = new Map<string, ExportDescription>();
  private readonly maxPayload: number;
  private readonly secureContext: tls.SecureContext | undefined;

  constructor(private readonly options: NbdServerOptions) {
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    for (const [name, dev] of Object.entries(options.exports)) {
      const rw = !dev.readOnly && dev.write !== undefined;
      const flags =
        NBD_FLAG_HAS_FLAGS |
        NBD_FLAG_SEND_FLUSH |
        NBD_FLAG_SEND_DF |
        (rw ? NBD_FLAG_SEND_WRITE_ZEROES : NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN) |
        (rw && dev.trim ? NBD_FLAG_SEND_TRIM : 0);
      this.descriptions.set(name, {
        size: dev.size,
        flags,
        minBlock: 1,
        preferredBlock: 4096,
        maxPayload: this.maxPayload,
        dirtyBitmaps: dev.dirtyStatus ? (dev.dirtyBitmaps ?? []) : [],
      });
    }
    if (options.tls) {
      this.secureContext = tls.createSecureContext({
        key: options.tls.key,
        cert: options.tls.cert,
        ...(options.tls.ca ? { ca: options.tls.ca } : {}),
      });
    }
    this.server = net.createServer((s) => this.accept(s));
  }

  /** Starts listening; for TCP with port 0 the returned target carries the real port. */
  async listen(target: NbdTarget): Promise<NbdTarget> {
    if ("host" in target && !this.options.tls) {
      if (!this.options.allowPlaintextLoopback) {
        throw new CairnError("invalid-argument", "NBD over TCP requires TLS credentials", {
          hint: "configure tls, or use a unix socket",
        });
      }
      if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(target.host)) {
        throw new CairnError(
          "invalid-argument",
          `plaintext NBD is only allowed on loopback, not ${target.host}`,
        );
      }
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      const done = () => {
        this.server.off("error", reject);
        resolve();
      };
      if ("path" in target) this.server.listen(target.path, done);
      else this.server.listen(target.port, target.host, done);
    });
    const addr = this.server.address();
    return "path" in target || addr === null || typeof addr === "string"
      ? target
      : { host: target.host, port: addr.port };
  }

  /** Stops accepting, drops every connection, waits (bounded) for in-flight device calls. */
  async close(timeoutMs = 5000): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const t of this.connections) t.abort();
    for (const s of this.sockets) s.destroy();
    await Promise.race([closed, new Promise((r) => setTimeout(r, timeoutMs))]);
  }

  private accept(raw: net.Socket): void {
    this.sockets.add(raw);
    raw.on("close", () => this.sockets.delete(raw));
    raw.on("error", () => {});
    this.serve(raw).catch((e) => {
      this.options.onConnectionError?.(e);
      raw.destroy();
    });
  }

  private async serve(raw: net.Socket): Promise<void> {
    const timeout = AbortSignal.timeout(this.options.handshakeTimeoutMs ?? 10_000);
    let socket: net.Socket | tls.TLSSocket = raw;
    let reader = new ByteReader(raw, "NBD client");
    const io: HandshakeIo = { source: reader, write: (b) => socket.write(b), signal: timeout };
    const outcome = await serverHandshake(io, {
      exports: this.descriptions,
      tlsRequired: this.secureContext !== undefined,
      ...(this.secureContext
        ? {
            startTls: async () => {
              reader.detach();
              socket = await this.upgrade(raw, timeout);
              reader = new ByteReader(socket, "NBD client");
              const s = socket;
              return { source: reader, write: (b: Buffer) => s.write(b), signal: timeout };
            },
          }
        : {}),
    });
    if (!outcome) {
      socket.end();
      return;
    }
    const leftover = reader.detach();
    const device = this.options.exports[outcome.exportName]!;
    const t = new Transmission(socket, device, this.descriptions.get(outcome.exportName)!, outcome, {
      maxInflight: this.options.maxInflightPerConnection ?? 16,
      onError: (e) => this.options.onConnectionError?.(e),
    });
    this.connections.add(t);
    socket.on("close", () => this.connections.delete(t));
    const parser = new RequestParser(this.maxPayload, (r: NbdRequest) => t.handle(r));
    t.start(parser, leftover);
  }

  private upgrade(raw: net.Socket, signal: AbortSignal): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext: this.secureContext!,
        requestCert: this.options.tls?.ca !== undefined,
        rejectUnauthorized: this.options.tls?.ca !== undefined,
      });
      const onAbort = () => {
        s.destroy();
        reject(new CairnError("timeout", "TLS handshake with NBD client timed out"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      s.once("secure", () => {
        signal.removeEventListener("abort", onAbort);
        resolve(s);
      });
      s.once("error", (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(
          new CairnError("unauthenticated", `TLS handshake with NBD client failed: ${e.message}`, {
            cause: e,
          }),
        );
      });
    });
  }
}
