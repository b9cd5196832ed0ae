import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runOpenssl } from "./runOpenssl.js";

/** A new EC P-256 private key and a CSR for it. The key is made here and never leaves this host. */
export async function createKeyAndCsr(opts: {
  commonName: string;
  signal: AbortSignal;
}): Promise<{ keyPem: string; csrPem: string }> {
  const dir = await mkdtemp(join(tmpdir(), "cairn-csr-"));
  try {
    const key = join(dir, "key.pem");
    await runOpenssl(
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key],
      opts.signal,
    );
    const csrPem = await runOpenssl(
      ["req", "-new", "-key", key, "-subj", `/CN=${opts.commonName.replace(/[/\\]/g, "_")}`],
      opts.signal,
    );
    return { keyPem: await readFile(key, "utf8"), csrPem };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
