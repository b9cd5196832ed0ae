import type net from "node:net";
import tls from "node:tls";
import { abortError, CairnError } from "../errors/CairnError.js";
import { ByteReader } from "./ByteReader.js";
import { ClientHandshake, type ExportInfo } from "./ClientHandshake.js";
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_REQUEST_MAGIC,
  REQUEST_HEADER_SIZE,
} from "./constants.js";
import type { Extent } from "./extents/Extent.js";
import { nbdErrno } from "./nbdErrno.js";
import { describeTarget, type NbdTarget, onreadFor, openSocket } from "./openSocket.js";
import { ReadDestination } from "./ReadDestination.js";
import { type InflightRequest, ReplyParser, type ReplySink } from "./ReplyParser.js";
import { tlsReadInto } from "./tlsReadInto.js";
import { writeU64 } from "./u64.js";

export interface NbdTlsOptions {
  /** PEM CA certificate(s) that signed the server's certificate. */
  ca: string | Buffer;
  /** Client certificate and key, for servers that verify peers (qemu's default). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to check the server certificate against; defaults to the TCP host or "localhost". */
  servername?: string;
}

export interface NbdConnectOptions {
  target: NbdTarget;
  exportName?: string;
  /** Upgrade with NBD_OPT_STARTTLS before anything else; required on non-loopback TCP. */
  tls?: NbdTlsOptions;
  /** Meta contexts to SET (e.g. "base:allocation", "qemu:dirty-bitmap:backup-0"). */
  metaContexts?: readonly string[];
  /** Bound on connect + handshake. Default 30 s. */
  connectTimeoutMs?: number;
  /** A request with no complete reply for this long kills the connection ("timeout"). Default 120 s. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface ReadResult {
  data: Buffer;
}

/** Where chunks read into the reused receive buffer go: the handshake reader, then the parser. */
interface Route {
  to: (chunk: Buffer) => void;
  target?: () => Buffer | undefined;
  landed?: (n: number) => void;
  small?: () => boolean;
}

/** Payloads at least this large are read straight into the destination (zero-copy). */
const DIRECT_MIN = 4096;

/** A READ whose destination is large enough for its payload to land there directly. */
const readsDirect = (dest: ReadDestination | undefined): boolean =>
  dest !== undefined && dest.length >= DIRECT_MIN;

interface Pending extends InflightRequest {
  handle: number;
  dest: ReadDestination | undefined;
  covered: number;
  statuses: Map<number, Extent[]> | undefined;
  error: CairnError | undefined;
  abandoned: boolean;
  startedAt: number;
  resolve: (p: Pending) => void;
  reject: (e: CairnError) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * One NBD connection: handshake, then pipelined requests matched to replies by handle, in any
 * order. NbdClient is the public face; this class is exported for tests and for NbdClient only.
 */
export class NbdConnection implements ReplySink {
  readonly peer: string;
  private readonly pending = new Map<number, Pending>();
  private nextHandle = 1;
  private failure: CairnError | undefined;
  private readonly parser = new ReplyParser(this);
  private readonly watchdog: NodeJS.Timeout;
  private closing = false;
  private corked = false;
  /** In-flight READs large enough to land in their destination (see `small` in openSocket). */
  private directReads = 0;
  private readonly uncork = () => {
    this.corked = false;
    this.socket.uncork();
  };

  private constructor(
    private readonly socket: net.Socket | tls.TLSSocket,
    readonly info: ExportInfo,
    readonly contexts: ReadonlyMap<string, number>,
    peer: string,
    private readonly requestTimeoutMs: number,
    leftover: Buffer,
    private readonly route: Route | undefined,
  ) {
    this.peer = peer;
    const onChunk = (d: Buffer) => {
      try {
        this.parser.push(d);
      } catch (e) {
        this.fail(e as CairnError);
      }
    };
    if (route) {
      route.to = onChunk;
      route.target = () => this.directTarget();
      // Between payloads, with direct reads in flight, read just enough for the next reply header:
      // a big read would pull whole payloads into the receive buffer, to be copied out again.
      route.small = () => this.directReads > 0 && this.directTarget() === undefined;
      route.landed = (n) => {
        try {
          this.parser.landed(n);
        } catch (e) {
          this.fail(e as CairnError);
        }
      };
    } else socket.on("data", onChunk);
    socket.on("error", (e) => this.fail(this.dropped(e)));
    socket.on("close", () => this.fail(this.dropped()));
    this.watchdog = setInterval(
      () => this.checkTimeouts(),
      Math.max(250, Math.min(5000, requestTimeoutMs / 4)),
    );
    this.watchdog.unref();
    if (leftover.length) {
      // The server sends nothing unprompted after GO; leftover bytes are junk or a hostile peer.
      this.fail(
        new CairnError("protocol", `NBD server ${peer} sent ${leftover.length} unexpected bytes after GO`),
      );
    }
    socket.resume();
  }

  static async connect(options: NbdConnectOptions): Promise<NbdConnection> {
    const peer = describeTarget(options.target);
    const timeoutMs = options.connectTimeoutMs ?? 30_000;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    // Sockets read into one reused buffer, or straight into read destinations (see openSocket);
    // over TLS once tlsReadInto has set that up, else through 'data' events.
    const route: Route = { to: () => {} };
    const router = {
      chunk: (b: Buffer) => route.to(b),
      target: () => route.target?.(),
      landed: (n: number) => route.landed?.(n),
      small: () => route.small?.() ?? false,
    };
    let direct = !options.tls;
    let socket: net.Socket | tls.TLSSocket = await openSocket(
      options.target,
      timeoutMs,
      options.signal,
      options.tls ? undefined : router,
    );
    try {
      let reader = new ByteReader(socket, peer, direct);
      route.to = (b) => reader.push(b);
      const hs = new ClientHandshake({ source: reader, write: (b) => socket.write(b), signal }, peer);
      await hs.greet();
      if (options.tls) {
        await hs.startTls();
        reader.detach();
        const tlsSocket = await upgradeTls(
          socket,
          options.target,
          options.tls,
          signal,
          peer,
          onreadFor(router),
        );
        direct = tlsSocket.direct;
        reader = new ByteReader(tlsSocket.socket, peer, direct);
        socket = tlsSocket.socket;
        hs.io = { source: reader, write: (b) => tlsSocket.socket.write(b), signal };
      }
      await hs.structuredReplies();
      const contexts = options.metaContexts?.length
        ? await hs.metaContexts(options.exportName ?? "", options.metaContexts)
        : new Map<string, number>();
      const info = await hs.go(options.exportName ?? "");
      const leftover = reader.detach();
      return new NbdConnection(
        socket,
        info,
        contexts,
        peer,
        options.requestTimeoutMs ?? 120_000,
        leftover,
        direct ? route : undefined,
      );
    } catch (e) {
      socket.destroy();
      if (deadline.aborted && !(options.signal?.aborted ?? false)) {
        throw new CairnError("timeout", `NBD handshake with ${peer} timed out after ${timeoutMs} ms`, {
          cause: e,
        });
      }
      if (options.signal?.aborted) throw abortError(options.signal, `NBD handshake with ${peer}`);
      throw e;
    }
  }

  /** Reads land in reused or destination buffers (openSocket's onread, or tlsReadInto). */
  get readsIntoBuffers(): boolean {
    return this.route !== undefined;
  }

  /** Requests in flight on this connection (for least-loaded scheduling). */
  get inflight(): number {
    return this.pending.size;
  }

  get failed(): CairnError | undefined {
    return this.failure;
  }

  /** Reads [offset, offset+dest.length) into dest. */
  async readInto(offset: number, dest: Buffer, signal?: AbortSignal): Promise<void> {
    await this.request(NBD_CMD_READ, 0, offset, dest.length, undefined, new ReadDestination([dest]), signal);
  }

  /** One READ of [offset, offset + total length) whose payload fills `parts` in order. */
  async readIntoParts(offset: number, parts: readonly Buffer[], signal?: AbortSignal): Promise<void> {
    const dest = new ReadDestination(parts);
    await this.request(NBD_CMD_READ, 0, offset, dest.length, undefined, dest, signal);
  }

  /** Sends one BLOCK_STATUS request; returns extents per negotiated context id. */
  async blockStatus(
    offset: number,
    length: number,
    flags: number,
    signal?: AbortSignal,
  ): Promise<Map<number, Extent[]>> {
    const p = await this.request(NBD_CMD_BLOCK_STATUS, flags, offset, length, undefined, undefined, signal);
    return p.statuses ?? new Map();
  }

  /** WRITE / WRITE_ZEROES / TRIM / FLUSH / CACHE: commands whose reply carries no data. */
  async command(
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload: Buffer | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.request(type, flags, offset, length, payload, undefined, signal);
  }

  /** NBD_CMD_DISC after in-flight requests finish (bounded by timeoutMs), then closes. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.failure) return;
    this.closing = true;
    const until = Date.now() + timeoutMs;
    while (this.pending.size > 0 && Date.now() < until && !this.failure) await sleep(5);
    if (!this.failure) {
      const h = this.header(NBD_CMD_DISC, 0, 0, 0, 0);
      this.socket.end(h);
    }
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      const t = setTimeout(
        () => {
          this.socket.destroy();
          resolve();
        },
        Math.max(0, until - Date.now()) + 1000,
      );
      this.socket.once("close", () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.fail(new CairnError("unavailable", `NBD connection to ${this.peer} was closed`));
  }

  /** Tears the connection down now, failing all in-flight requests with `error`. */
  destroy(error?: CairnError): void {
    this.fail(error ?? new CairnError("aborted", `NBD connection to ${this.peer} was destroyed`));
  }

  /** The rest of the read payload being received, as a view of its destination, if worth it. */
  private directTarget(): Buffer | undefined {
    const d = this.parser.direct();
    if (!d || d.length < DIRECT_MIN || this.failure) return undefined;
    const p = this.pending.get(d.handle);
    if (!p?.dest || p.abandoned) return undefined;
    const view = p.dest.view(d.offset - p.offset, d.length);
    // Near the end of a part of a scatter read, the few bytes left go through the receive buffer.
    return view.length >= DIRECT_MIN ? view : undefined;
  }

  onDataLanded(handle: number, _offset: number, length: number): void {
    this.pending.get(handle)!.covered += length;
  }

  // --- ReplySink -------------------------------------------------------------------------------

  lookup(handle: number): InflightRequest | undefined {
    return this.pending.get(handle);
  }

  onSimpleReply(handle: number, error: number): void {
    const p = this.pending.get(handle)!;
    if (error !== 0) p.error ??= nbdErrno(error, cmdName(p.type));
    this.finish(p);
  }

  onData(handle: number, offset: number, data: Buffer): void {
    const p = this.pending.get(handle)!;
    if (p.dest && !p.abandoned) p.dest.copyIn(data, offset - p.offset);
    p.covered += data.length;
  }

  onHole(handle: number, offset: number, length: number): void {
    const p = this.pending.get(handle)!;
    if (p.dest && !p.abandoned) p.dest.zero(offset - p.offset, length);
    p.covered += length;
  }

  onBlockStatus(handle: number, contextId: number, extents: Extent[]): void {
    const p = this.pending.get(handle)!;
    p.statuses ??= new Map();
    if (p.statuses.has(contextId)) {
      p.error ??= new CairnError(
        "protocol",
        `NBD server sent two block status chunks for context ${contextId}`,
      );
    }
    p.statuses.set(contextId, extents);
  }

  onError(handle: number, error: number, message: string, offset: number | undefined): void {
    const p = this.pending.get(handle)!;
    p.error ??= nbdErrno(error, `${cmdName(p.type)} at ${p.offset}+${p.length}`, message, offset);
  }

  onDone(handle: number): void {
    this.finish(this.pending.get(handle)!);
  }

  // --- internals -------------------------------------------------------------------------------

  private request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    payload: Buffer | undefined,
    dest: ReadDestination | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Pending> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing)
      return Promise.reject(new CairnError("failed-precondition", "NBD connection is closing"));
    if (signal?.aborted) return Promise.reject(abortError(signal, `NBD ${cmdName(type)}`));
    const handle = this.allocHandle();
    return new Promise<Pending>((resolve, reject) => {
      const p: Pending = {
        handle,
        type,
        offset,
        length,
        dest,
        covered: 0,
        statuses: undefined,
        error: undefined,
        abandoned: false,
        startedAt: Date.now(),
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        // The request stays registered so its reply is still parsed and discarded.
        p.onAbort = () => {
          p.abandoned = true;
          reject(abortError(signal, `NBD ${cmdName(type)} at ${offset}`));
        };
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.pending.set(handle, p);
      if (readsDirect(dest)) this.directReads++;
      // Requests issued in the same tick leave in one write (one syscall instead of one each).
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        process.nextTick(this.uncork);
      }
      this.socket.write(this.header(type, flags, handle, offset, length));
      if (payload) this.socket.write(payload);
    });
  }

  private header(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(REQUEST_HEADER_SIZE);
    h.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(handle, 12);
    writeU64(h, offset, 16);
    h.writeUInt32BE(length, 24);
    return h;
  }

  private allocHandle(): number {
    for (;;) {
      const h = this.nextHandle;
      this.nextHandle = h >= 0xffffffff ? 1 : h + 1;
      if (!this.pending.has(h)) return h;
    }
  }

  private finish(p: Pending): void {
    this.pending.delete(p.handle);
    if (readsDirect(p.dest)) this.directReads--;
    if (p.onAbort) p.signal?.removeEventListener("abort", p.onAbort);
    if (p.abandoned) return;
    if (p.error) {
      p.reject(p.error);
      return;
    }
    if (p.type === NBD_CMD_READ && p.covered !== p.length) {
      const e = new CairnError(
        "protocol",
        `NBD server answered ${p.covered} of ${p.length} bytes for read at ${p.offset}`,
      );
      p.reject(e);
      this.fail(e);
      return;
    }
    p.resolve(p);
  }

  private checkTimeouts(): void {
    const now = Date.now();
    for (const p of this.pending.values()) {
      if (now - p.startedAt > this.requestTimeoutMs) {
        this.fail(
          new CairnError(
            "timeout",
            `NBD ${cmdName(p.type)} at ${p.offset} got no reply within ${this.requestTimeoutMs} ms`,
            {
              details: { peer: this.peer, offset: p.offset, length: p.length },
            },
          ),
        );
        return;
      }
    }
  }

  private dropped(cause?: Error): CairnError {
    return new CairnError(
      "unavailable",
      `NBD connection to ${this.peer} dropped${cause ? `: ${cause.message}` : ""} with ${this.pending.size} requests in flight`,
      { cause, details: { peer: this.peer, inflight: this.pending.size, midReply: !this.parser.idle } },
    );
  }

  private fail(e: CairnError): void {
    if (this.failure) return;
    this.failure = e;
    this.directReads = 0;
    clearInterval(this.watchdog);
    for (const p of this.pending.values()) {
      if (p.onAbort) p.signal?.removeEventListener("abort", p.onAbort);
      if (!p.abandoned) p.reject(e);
    }
    this.pending.clear();
    this.socket.destroy();
  }
}

function upgradeTls(
  socket: net.Socket,
  target: NbdTarget,
  opts: NbdTlsOptions,
  signal: AbortSignal,
  peer: string,
  onread: ReturnType<typeof onreadFor>,
): Promise<{ socket: tls.TLSSocket; direct: boolean }> {
  return new Promise((resolve, reject) => {
    const host = opts.servername ?? ("host" in target ? target.host : "localhost");
    const isIp = /^[\d.]+$|:/.test(host);
    const t = tls.connect({
      socket,
      ca: opts.ca,
      ...(opts.cert ? { cert: opts.cert } : {}),
      ...(opts.key ? { key: opts.key } : {}),
      host,
      ...(isIp ? {} : { servername: host }),
    });
    // Before the handshake ends: no application data can have arrived yet.
    const direct = tlsReadInto(t, onread);
    const onAbort = () => {
      t.destroy();
      reject(new CairnError("aborted", `TLS handshake with ${peer} aborted`));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    t.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      t.off("error", onError);
      resolve({ socket: t, direct });
    });
    const onError = (e: Error) => {
      signal.removeEventListener("abort", onAbort);
      t.destroy();
      reject(
        new CairnError("unauthenticated", `TLS handshake with NBD server ${peer} failed: ${e.message}`, {
          cause: e,
          hint: "check that the CA, client certificate and server certificate belong together",
        }),
      );
    };
    t.once("error", onError);
  });
}

function cmdName(type: number): string {
  return (
    ["read", "write", "disconnect", "flush", "trim", "cache", "write-zeroes", "block-status"][type] ??
    `cmd ${type}`
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
