import { createServer } from "node:http";
import { CairnError } from "../errors/CairnError.js";
import type { MetricsRegistry } from "./MetricsRegistry.js";

/** Serves GET /metrics (Prometheus text format) on `listen` ("host:port", port 0 picks one). */
export async function startMetricsServer(opts: {
  listen: string;
  registry: MetricsRegistry;
}): Promise<{ port: number; close(): Promise<void> }> {
  const i = opts.listen.lastIndexOf(":");
  const host = opts.listen.slice(0, i);
  const port = Number(opts.listen.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new CairnError(
      "invalid-argument",
      `metrics listen address ${JSON.stringify(opts.listen)} is not host:port`,
    );
  const server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      res.end(opts.registry.render());
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found: metrics are at /metrics\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) =>
      reject(
        new CairnError("unavailable", `cannot serve metrics on ${opts.listen}: ${(e as Error).message}`, {
          cause: e,
        }),
      ),
    );
    server.listen(port, host, resolve);
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
