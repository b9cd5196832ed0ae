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

/** Key of the config's MAC (format §3.1); never leaves the main thread. */
function configKeyOf(master: Buffer): Buffer {
  return createHmac("sha256", master).update("cairn/2/config").digest();
}

/**
 * Which associated data wraps the master key (format §3.1): 2 marks a config that carries a MAC,
 * 1 a legacy config written before configs were authenticated.
 */
export type KeyWrapVersion = 1 | 2;

function wrapAad(version: KeyWrapVersion, repositoryId: string): Buffer {
  return Buffer.from(`cairn/${version}/master-key/${repositoryId}`);
}

function wrap(kek: Buffer, master: Buffer, repositoryId: string): string {
  const nonce = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", kek, nonce);
  c.setAAD(wrapAad(2, repositoryId));
  return Buffer.concat([nonce, c.update(master), c.final(), c.getAuthTag()]).toString("base64");
}

function unwrap(
  kek: Buffer,
  wrapped: Buffer,
  version: KeyWrapVersion,
  repositoryId: string,
): Buffer | undefined {
  try {
    const d = createDecipheriv("aes-256-gcm", kek, wrapped.subarray(0, 12));
    d.setAAD(wrapAad(version, repositoryId));
    d.setAuthTag(wrapped.subarray(wrapped.length - 16));
    return Buffer.concat([d.update(wrapped.subarray(12, wrapped.length - 16)), d.final()]);
  } catch {
    return undefined;
  }
}

/** A master key, unwrapped or new: its subkeys, and what authenticates the config. */
export interface MasterKey {
  keys: RepositoryKeys;
  /** HMAC-SHA-256 key of the config's MAC (format §3.1). */
  configKey: Buffer;
  /** How the key was wrapped: 2 = the config must carry a valid MAC. */
  wrapVersion: KeyWrapVersion;
  /** `wrappedKey` for the same master key wrapped anew under "cairn/2/…" (format §3.1's upgrade). */
  rewrap(): string;
}

function masterKey(
  master: Buffer,
  kek: Buffer,
  repositoryId: string,
  wrapVersion: KeyWrapVersion,
): MasterKey {
  return {
    keys: subKeys(master),
    configKey: configKeyOf(master),
    wrapVersion,
    rewrap: () => wrap(kek, master, repositoryId),
  };
}

/** Draws a random master key and wraps it (under "cairn/2/…") with a key derived from the passphrase. */
export async function createMasterKey(
  passphrase: string,
  repositoryId: string,
  options: { N?: number; signal?: AbortSignal } = {},
): Promise<{ config: EncryptionConfig; master: MasterKey }> {
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
  const config: EncryptionConfig = {
    algorithm: "aes-256-gcm",
    kdf,
    wrappedKey: wrap(kek, master, repositoryId),
  };
  return { config, master: masterKey(master, kek, repositoryId, 2) };
}

/**
 * Unwraps the master key, trying the "cairn/2/…" wrap before the legacy "cairn/1/…" one (format
 * §3.1). A wrong passphrase is "permission-denied" naming the repository.
 */
export async function openMasterKey(
  passphrase: string | undefined,
  repositoryId: string,
  config: EncryptionConfig,
  location: string,
  signal?: AbortSignal,
): Promise<MasterKey> {
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
  for (const version of [2, 1] as const) {
    const master = w.length >= 28 ? unwrap(kek, w, version, repositoryId) : undefined;
    if (master) return masterKey(master, kek, repositoryId, version);
  }
  throw new CairnError("permission-denied", `wrong passphrase for repository ${location}`, {
    hint: "check the passphrase; if it is right, the config's key settings were modified and the repository cannot be read",
  });
}
