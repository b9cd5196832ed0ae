import { z } from "zod";

export const FORMAT_VERSION = 1;
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** The `config` object (format §3). Never encrypted: it is needed to unwrap the key. */
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
});
export type RepositoryConfig = z.infer<typeof repositoryConfigSchema>;
