import { z } from "zod";
import { CairnError } from "../../errors/CairnError.js";

/**
 * Packs described by one pack index object, at most (format §6a): ~1 GiB of 4 MiB packs, a few
 * hundred KiB of JSON. A multi-TiB backup writes many pack indexes, never one huge one.
 */
export const PACKS_PER_INDEX = 256;

/** Where one chunk's frame is (format §6a). */
export interface ChunkLocation {
  pack: string;
  offset: number;
  length: number;
}

/** One pack and the frames in it. */
export interface PackRecord {
  pack: string;
  chunks: Array<{ id: string; offset: number; length: number }>;
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const schema = z.object({
  version: z.literal(1),
  packs: z.array(
    z.object({
      id: hex64,
      chunks: z.array(z.tuple([hex64, z.number().int().nonnegative(), z.number().int().positive()])),
    }),
  ),
});

/** The unframed bytes of a pack index object. */
export function encodePackIndex(records: readonly PackRecord[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      version: 1,
      packs: records.map((r) => ({ id: r.pack, chunks: r.chunks.map((c) => [c.id, c.offset, c.length]) })),
    }),
  );
}

export function decodePackIndex(plain: Buffer, what: string): PackRecord[] {
  let json: unknown;
  try {
    json = JSON.parse(plain.toString("utf8"));
  } catch (e) {
    throw new CairnError("corrupt", `${what} is not valid JSON`, { cause: e });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const v = (json as { version?: unknown } | null)?.version;
    throw new CairnError(
      "corrupt",
      typeof v === "number" && v > 1
        ? `${what} has pack index version ${v}; this Cairn understands 1`
        : `${what} is invalid: ${parsed.error.message}`,
      typeof v === "number" && v > 1 ? { hint: "upgrade Cairn" } : {},
    );
  }
  return parsed.data.packs.map((p) => ({
    pack: p.id,
    chunks: p.chunks.map(([id, offset, length]) => ({ id, offset, length })),
  }));
}
