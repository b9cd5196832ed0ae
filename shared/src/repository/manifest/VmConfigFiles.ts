import { z } from "zod";
import { CairnError } from "../../errors/CairnError.js";
import type { SnapshotManifest } from "./SnapshotManifest.js";

/**
 * The VM's configuration files stored with a snapshot (format §7.1): the UEFI variable store
 * (NVRAM) and the swtpm state of an emulated TPM. They live inline in the manifest, under
 * `extra.configFiles`, zstd-compressed and base64-encoded: sealed atomically with the snapshot,
 * encrypted with it, and never collected by GC on their own.
 */
export const CONFIG_FILES_KEY = "configFiles";

/** What a file is to the domain. */
export const configFileKindSchema = z.enum(["nvram", "tpm"]);
export type ConfigFileKind = z.infer<typeof configFileKindSchema>;

/** Where a restore writes the file, relative to the restore directory: never absolute, never "..". */
const restoreNameSchema = z
  .string()
  .min(1)
  .refine((n) => !n.startsWith("/") && !n.split("/").some((p) => p === ".." || p === "." || p === ""), {
    message: "must be a relative path without empty, . or .. segments",
  });

export const storedConfigFileSchema = z.object({
  kind: configFileKindSchema,
  status: z.literal("stored"),
  /** Absolute path on the host when it was backed up. */
  path: z.string().min(1),
  name: restoreNameSchema,
  size: z.number().int().nonnegative(),
  /** SHA-256 of the file's bytes (plaintext, before compression). */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Permission bits (st_mode & 0o7777), owner and group on the host. */
  mode: z.number().int().min(0).max(0o7777),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  encoding: z.literal("zstd+base64"),
  data: z.string(),
});
export type StoredConfigFile = z.infer<typeof storedConfigFileSchema>;

export const missingConfigFileSchema = z.object({
  kind: configFileKindSchema,
  status: z.literal("missing"),
  path: z.string().min(1),
  name: restoreNameSchema,
  /** Why it is not in the snapshot, for people (e.g. "no such file"). */
  reason: z.string().min(1),
});
export type MissingConfigFile = z.infer<typeof missingConfigFileSchema>;

export const vmConfigFilesSchema = z.object({
  version: z.literal(1),
  capturedAt: z.string(),
  files: z.array(z.discriminatedUnion("status", [storedConfigFileSchema, missingConfigFileSchema])),
});
export type VmConfigFiles = z.infer<typeof vmConfigFilesSchema>;

/**
 * The configuration files recorded in a manifest; undefined for snapshots taken before Cairn
 * captured them. A malformed record is `corrupt`.
 */
export function vmConfigFilesOf(manifest: SnapshotManifest): VmConfigFiles | undefined {
  const raw = manifest.extra[CONFIG_FILES_KEY];
  if (raw === undefined) return undefined;
  const r = vmConfigFilesSchema.safeParse(raw);
  if (!r.success) {
    throw new CairnError(
      "corrupt",
      `snapshot ${manifest.id}: its configuration file record is invalid: ${r.error.issues
        .map((i) => `${i.path.join(".")}: ${i.message}`)
        .join("; ")}`,
    );
  }
  return r.data;
}

/**
 * A manifest's JSON without the contents of its configuration files (NVRAM, TPM state: VM
 * secrets). What the coordinator indexes and what ShowSnapshot answers: metadata only; only a
 * restore, reading the repository, sees the bytes. Each stored file keeps its size and SHA-256 and
 * says `"data": null, "redacted": true`. A manifest without such files comes back unchanged.
 */
export function withoutConfigFileContents(manifestJson: string): string {
  let m: { extra?: Record<string, unknown> };
  try {
    m = JSON.parse(manifestJson) as typeof m;
  } catch {
    return manifestJson;
  }
  const files = (m.extra?.[CONFIG_FILES_KEY] as { files?: unknown } | undefined)?.files;
  if (!Array.isArray(files) || !files.some((f) => f && typeof f === "object" && "data" in f))
    return manifestJson;
  for (const f of files) {
    if (f && typeof f === "object" && "data" in f) {
      (f as Record<string, unknown>).data = null;
      (f as Record<string, unknown>).redacted = true;
    }
  }
  return JSON.stringify(m);
}
