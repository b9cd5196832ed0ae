import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Identity {
  keyPem: string;
  certPem: string;
  caPem: string;
  /**
   * The coordinator's certificate as seen at enrollment: its public key is the pin agents check
   * callers against (docs/architecture.md "Identity"). Absent for agents enrolled before pins.
   */
  coordinatorPem?: string;
}

/** The pin's file in an identity directory. */
export const COORDINATOR_PIN_FILE = "coordinator.pem";

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
  if (id.coordinatorPem) await writeCoordinatorPin(dir, id.coordinatorPem);
}

/** Pins the coordinator's certificate in an existing identity directory. */
export async function writeCoordinatorPin(dir: string, certPem: string): Promise<void> {
  await atomic(join(dir, COORDINATOR_PIN_FILE), certPem, 0o644);
}

/** The identity in `dir`, or undefined when this host has not enrolled. */
export async function readIdentity(dir: string): Promise<Identity | undefined> {
  try {
    const [keyPem, certPem, caPem] = await Promise.all(
      ["key.pem", "cert.pem", "ca.pem"].map((f) => readFile(join(dir, f), "utf8")),
    );
    const coordinatorPem = await readFile(join(dir, COORDINATOR_PIN_FILE), "utf8").catch(
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      },
    );
    return {
      keyPem: keyPem as string,
      certPem: certPem as string,
      caPem: caPem as string,
      ...(coordinatorPem ? { coordinatorPem } : {}),
    };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}
