import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Identity {
  keyPem: string;
  certPem: string;
  caPem: string;
}

async function atomic(path: string, content: string, mode: number): Promise<void> {
  await writeFile(`${path}.tmp`, content, { mode });
  await rename(`${path}.tmp`, path);
}

/** Writes an enrolled identity (key 0600) into `dir` (0700), each file atomically. */
export async function writeIdentity(dir: string, id: Identity): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await atomic(join(dir, "key.pem"), id.keyPem, 0o600);
  await atomic(join(dir, "cert.pem"), id.certPem, 0o644);
  await atomic(join(dir, "ca.pem"), id.caPem, 0o644);
}

/** The identity in `dir`, or undefined when this host has not enrolled. */
export async function readIdentity(dir: string): Promise<Identity | undefined> {
  try {
    const [keyPem, certPem, caPem] = await Promise.all(
      ["key.pem", "cert.pem", "ca.pem"].map((f) => readFile(join(dir, f), "utf8")),
    );
    return { keyPem: keyPem as string, certPem: certPem as string, caPem: caPem as string };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}
