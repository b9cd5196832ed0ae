import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt } from "node:crypto";
import { CairnError } from "../../errors/CairnError.js";
import type { RepositoryKeys } from "./RepositoryKeys.js";

export interface ScryptParams {
  name: "scrypt";
  N: number;
  r: number;
  p: number;
  salt: string;
}

export interface EncryptionConfig {
  algorithm: "aes-256-gcm";
  kdf: ScryptParams;
  /** base64 of nonce(12) | ciphertext(32) | tag(16). */
  wrappedKey: string;
}

function deriveKek(passphrase: string, kdf: ScryptParams, signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    // maxmem: scrypt needs 128·N·r bytes; give it headroom above Node's 32 MiB default.
    scrypt(
      passphrase,
      Buffer.from(kdf.salt, "base64"),
      32,
      { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

function subKeys(master: Buffer): RepositoryKeys {
  return {
    dataKey: createHmac("sha256", master).update("cairn/1/data").digest(),
    idKey: createHmac("sha256", master).update("cairn/1/id").digest(),
  };
}

/** Draws a random master key and wraps it with a key derived from the passphrase. */
export async function createMasterKey(
  passphrase: string,
  repositoryId: string,
  options: { N?: number; signal?: AbortSignal } = {},
): Promise<{ config: EncryptionConfig; keys: RepositoryKeys }> {
  if (passphrase.length === 0) {
    throw new CairnError("invalid-argument", "an encrypted repository needs a non-empty passphrase", {
      hint: "pass a passphrase (there is no default)",
    });
  }
  const kdf: ScryptParams = {
    name: "scrypt",
    N: options.N ?? 2 ** 15,
    r: 8,
    p: 1,
    salt: randomBytes(16).toString("base64"),
  };
  const kek = await deriveKek(passphrase, kdf, options.signal);
  const master = randomBytes(32);
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", kek, nonce);
  c.setAAD(Buffer.from(`cairn/1/master-key/${repositoryId}`));
  const wrapped = Buffer.concat([nonce, c.update(master), c.final(), c.getAuthTag()]);
  return {
    config: { algorithm: "aes-256-gcm", kdf, wrappedKey: wrapped.toString("base64") },
    keys: subKeys(master),
  };
}

/** Unwraps the master key; a wrong passphrase is "permission-denied" naming the repository. */
export async function openMasterKey(
  passphrase: string | undefined,
  repositoryId: string,
  config: EncryptionConfig,
  location: string,
  signal?: AbortSignal,
): Promise<RepositoryKeys> {
  if (passphrase === undefined || passphrase.length === 0) {
    throw new CairnError(
      "invalid-argument",
      `repository ${location} is encrypted and no passphrase was given`,
      {
        hint: "pass the repository passphrase (there is no default)",
      },
    );
  }
  const kek = await deriveKek(passphrase, config.kdf, signal);
  const w = Buffer.from(config.wrappedKey, "base64");
  try {
    const d = createDecipheriv("aes-256-gcm", kek, w.subarray(0, 12));
    d.setAAD(Buffer.from(`cairn/1/master-key/${repositoryId}`));
    d.setAuthTag(w.subarray(w.length - 16));
    const master = Buffer.concat([d.update(w.subarray(12, w.length - 16)), d.final()]);
    return subKeys(master);
  } catch (e) {
    throw new CairnError("permission-denied", `wrong passphrase for repository ${location}`, {
      cause: e,
      hint: "check the passphrase; without the right one the repository cannot be read",
    });
  }
}
