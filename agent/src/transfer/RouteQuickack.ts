import { isIP } from "node:net";
import { execa } from "execa";
import type { Logger } from "../../../shared/src/log/createLogger.js";

/** What `ip -j route get ADDR` prints, as far as it matters here. */
interface RouteGet {
  dev?: string;
  metrics?: Record<string, unknown>[];
}

/**
 * Whether this host's route to an exporter has `quickack` (docs/transfer-paths.md §4). QEMU's NBD
 * server leaves Nagle's algorithm on and writes each TLS record with its own send, so every reply
 * of more than one record waits for the reader's delayed ACK: 40 ms per round trip, ~300 ms of an
 * incremental's handshake and block-status maps. A reader cannot set TCP_QUICKACK from Node; the
 * route attribute is the operator's knob, so the reader checks it and warns once per exporter.
 */
export class RouteQuickack {
  private readonly seen = new Map<string, boolean | undefined>();

  constructor(
    private readonly log: Logger,
    private readonly routeGet: (
      address: string,
      signal: AbortSignal,
    ) => Promise<RouteGet | undefined> = ipRouteGet,
  ) {}

  /** Warns (once per address) when the route lacks quickack; the answer, or undefined if unknown. */
  async check(address: string, signal: AbortSignal): Promise<boolean | undefined> {
    if (this.seen.has(address)) return this.seen.get(address);
    const route = await this.routeGet(address, signal).catch(() => undefined);
    const on = route ? (route.metrics ?? []).some((m) => Number(m.quickack) === 1) : undefined;
    this.seen.set(address, on);
    if (on === false) {
      this.log.warn(
        { exporter: address, dev: route?.dev },
        "the route to this exporter has no quickack: each small NBD reply over TLS waits ~40 ms for " +
          `a delayed ACK. Set it with: ip route change <the route to ${address}> quickack 1 ` +
          "(docs/transfer-paths.md §4)",
      );
    }
    return on;
  }
}

async function ipRouteGet(address: string, signal: AbortSignal): Promise<RouteGet | undefined> {
  // Only literal addresses reach `ip`: a name from the wire is not resolved here.
  if (!isIP(address)) return undefined;
  const r = await execa("ip", ["-j", "route", "get", address], { cancelSignal: signal, timeout: 5_000 });
  const parsed = JSON.parse(r.stdout) as RouteGet[];
  return parsed[0];
}
