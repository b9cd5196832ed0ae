/**
 * Runs inside a test network namespace (NetNs.node): connects to an NBD export with Cairn's client,
 * reads ranges, and prints one JSON line: { ok, size, sha256[] } or { ok: false, code, message }.
 * Input (stdin, JSON): { host, port, exportName, tls?: NbdTlsOptions, reads: [{ offset, length }] }.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { CairnError } from "../../../shared/src/errors/CairnError.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import type { NbdTlsOptions } from "../../../shared/src/nbd/NbdConnection.js";

interface Request {
  host: string;
  port: number;
  exportName: string;
  tls?: NbdTlsOptions;
  reads: { offset: number; length: number }[];
}

const req = JSON.parse(readFileSync(0, "utf8")) as Request;
const signal = AbortSignal.timeout(60_000);
try {
  const client = await NbdClient.connect({
    target: { host: req.host, port: req.port },
    exportName: req.exportName,
    ...(req.tls ? { tls: req.tls } : {}),
    connectTimeoutMs: 15_000,
    signal,
  });
  const sha256: string[] = [];
  for (const r of req.reads) {
    sha256.push(
      createHash("sha256")
        .update(await client.read(r.offset, r.length, { signal }))
        .digest("hex"),
    );
  }
  const size = client.size;
  await client.close();
  process.stdout.write(`${JSON.stringify({ ok: true, size, sha256 })}\n`);
} catch (e) {
  const err = e as CairnError;
  process.stdout.write(
    `${JSON.stringify({ ok: false, code: err.code ?? "unknown", message: err.message })}\n`,
  );
}
