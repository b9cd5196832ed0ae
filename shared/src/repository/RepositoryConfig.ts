import { z } from "zod";

/** Highest format version this code reads and writes; new repositories get it (format §3). */
export const FORMAT_VERSION = 2;
/** Version 2 stores chunks in packs (format §6a); version 1 one object per chunk. */
export function usesPacks(config: { version: number }): boolean {
  return config.version >= 2;
}
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** The `config` object (format §3). Never encrypted: it is needed to unwrap the key; authenticated by `mac` (§3.1). */
export const repositoryConfigSchema = z.object({
  format: z.literal("cairn-repository"),
  version: z.number().int().positive(),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  createdAt: z.string(),
  chunkSize: z
    .number()
    .int()
    .min(64 * 1024)
    .max(16 * 1024 * 1024)
    .refine((n) => (n & (n - 1)) === 0, "chunk size must be a power of two"),
  compression: z.object({ algorithm: z.literal("zstd"), level: z.number().int().min(1).max(19) }),
  encryption: z
    .object({
      algorithm: z.literal("aes-256-gcm"),
      kdf: z.object({
        name: z.literal("scrypt"),
        N: z.number().int(),
        r: z.number().int(),
        p: z.number().int(),
        salt: z.string(),
      }),
      wrappedKey: z.string(),
    })
    .nullable(),
  /** HMAC of the rest, in an encrypted repository whose config is authenticated (format §3.1). */
  mac: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
export type RepositoryConfig = z.infer<typeof repositoryConfigSchema>;
