import { CairnError, isCairnError } from "../errors/CairnError.js";
import { CONFIG_KEY } from "./layout.js";
import type { ObjectStore } from "./ports/ObjectStore.js";
import { FORMAT_VERSION, type RepositoryConfig, repositoryConfigSchema } from "./RepositoryConfig.js";

/**
 * The repository's `config` object (format §3), validated, without the passphrase: what opening a
 * repository reads first, and all a reach probe needs (the repository's id, docs/transfer-paths.md
 * §2). "not-found" when the store has no config (no repository there), "corrupt" when it is not a
 * valid config, "failed-precondition" for a format newer than this code.
 */
export async function readRepositoryConfig(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<RepositoryConfig> {
  return (await loadRepositoryConfig(store, signal)).config;
}

/**
 * readRepositoryConfig, with the config's content as stored: every field, also those the schema
 * does not know, which the config's MAC covers (format §3.1).
 */
export async function loadRepositoryConfig(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<{ config: RepositoryConfig; content: Record<string, unknown> }> {
  let raw: Buffer;
  try {
    raw = await store.get(CONFIG_KEY, { signal });
  } catch (e) {
    if (isCairnError(e, "not-found")) {
      throw new CairnError("not-found", `no Cairn repository at ${store.location}`, {
        cause: e,
        hint: "check the repository location, or create one with init",
      });
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString("utf8"));
  } catch (e) {
    throw new CairnError("corrupt", `the config of repository ${store.location} is not valid JSON`, {
      cause: e,
    });
  }
  const version = (json as { version?: unknown } | null)?.version;
  if (typeof version === "number" && version > FORMAT_VERSION) {
    throw new CairnError(
      "failed-precondition",
      `repository ${store.location} has format version ${version}; this Cairn understands up to ${FORMAT_VERSION}`,
      { hint: "upgrade Cairn to open this repository" },
    );
  }
  const parsed = repositoryConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new CairnError(
      "corrupt",
      `the config of repository ${store.location} is invalid: ${parsed.error.message}`,
    );
  }
  return { config: parsed.data, content: json as Record<string, unknown> };
}
