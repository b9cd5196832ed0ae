import { CairnError } from "../../errors/CairnError.js";
import type { RepositoryConfig } from "../RepositoryConfig.js";
import { configMacMatches } from "./configMac.js";
import { type MasterKey, openMasterKey } from "./masterKey.js";

export interface RepositoryKeyOptions {
  passphrase?: string | undefined;
  /** The caller knows the repository is encrypted (a passphrase given implies it too). */
  requireEncryption?: boolean | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * The one check between reading a repository's config and using it (format §3.1): refuses an
 * unencrypted config when encryption is expected, unwraps the master key, and verifies the config's
 * MAC (required when the key is wrapped for an authenticated config). Undefined for an unencrypted
 * repository. Reads and writes nothing.
 */
export async function openRepositoryKeys(
  location: string,
  config: RepositoryConfig,
  content: Record<string, unknown>,
  options: RepositoryKeyOptions,
): Promise<MasterKey | undefined> {
  const passphraseGiven = options.passphrase !== undefined && options.passphrase.length > 0;
  if (!config.encryption) {
    if (!passphraseGiven && !options.requireEncryption) return undefined;
    throw new CairnError(
      "failed-precondition",
      `repository config at ${location} is not encrypted, but ${passphraseGiven ? "a passphrase was given" : "an encrypted repository was expected"}: refusing (possible downgrade)`,
      {
        hint: "if the repository was created unencrypted, open it without a passphrase; otherwise its config was rewritten: restore the config from a copy and check who can write the storage",
        details: { location },
      },
    );
  }
  const master = await openMasterKey(
    options.passphrase,
    config.id,
    config.encryption,
    location,
    options.signal,
  );
  const tampered = (why: string) =>
    new CairnError("corrupt", `the config of repository ${location} ${why}`, {
      hint: "restore the config from a copy and check who can write the storage; nothing was written",
      details: { location },
    });
  if (content["mac"] === undefined) {
    if (master.wrapVersion === 2)
      throw tampered(
        "has no MAC, but its key is wrapped for an authenticated config: refusing (possible downgrade)",
      );
  } else if (!configMacMatches(master.configKey, content)) {
    throw tampered("does not match its MAC: it was modified after it was written (refusing)");
  }
  return master;
}
