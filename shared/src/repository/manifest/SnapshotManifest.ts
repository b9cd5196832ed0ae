import { z } from "zod";

/** Snapshot manifest schema (format §7). Parsed with zod on every read. */
export const diskStatsSchema = z.object({
  bytesRead: z.number().int().nonnegative(),
  bytesNew: z.number().int().nonnegative(),
  bytesStored: z.number().int().nonnegative(),
  chunksNew: z.number().int().nonnegative(),
  chunksTotal: z.number().int().nonnegative(),
});
export type DiskStats = z.infer<typeof diskStatsSchema>;

export const backupKindSchema = z.enum(["full", "incremental", "differential", "copy"]);
export type BackupKind = z.infer<typeof backupKindSchema>;

export const diskEntrySchema = z.object({
  target: z.string().min(1),
  virtualSize: z.number().int().nonnegative(),
  sourceFormat: z.string(),
  chunkSize: z.number().int().positive(),
  index: z.string().regex(/^[0-9a-f]{64}$/),
  checkpoint: z.string().nullable(),
  parentSnapshot: z.string().nullable(),
  kind: backupKindSchema,
  fullReason: z.string().nullable(),
  stats: diskStatsSchema,
});
export type DiskEntry = z.infer<typeof diskEntrySchema>;

export const consistencySchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("quiesced"), freezeMs: z.number().optional() }),
  z.object({ kind: z.literal("crash-consistent"), reason: z.string() }),
]);
export type Consistency = z.infer<typeof consistencySchema>;

export const snapshotManifestSchema = z.object({
  formatVersion: z.literal(1),
  id: z.string().regex(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/),
  vm: z.object({ uuid: z.string(), name: z.string() }),
  domainXml: z.string(),
  disks: z.array(diskEntrySchema),
  consistency: consistencySchema,
  stats: z.object({
    bytesRead: z.number().int().nonnegative(),
    bytesNew: z.number().int().nonnegative(),
    bytesStored: z.number().int().nonnegative(),
  }),
  startedAt: z.string(),
  finishedAt: z.string(),
  labels: z.record(z.string(), z.string()),
  protected: z.boolean(),
  /** The agent job that sealed it (format §7); older manifests have it in extra.jobId only. */
  jobId: z.string().min(1).optional(),
  /** Room for the agent (NVRAM/TPM refs, freeze window...) without a format change. */
  extra: z.record(z.string(), z.unknown()),
});
export type SnapshotManifest = z.infer<typeof snapshotManifestSchema>;

/** The job that sealed a snapshot, from the typed field or, in older manifests, extra.jobId. */
export function jobIdOf(m: SnapshotManifest): string | undefined {
  const legacy = m.extra["jobId"];
  return m.jobId ?? (typeof legacy === "string" ? legacy : undefined);
}

/** Snapshot ids sort by time: `YYYYMMDDTHHMMSSZ-<8 hex>`. */
export function newSnapshotId(now: Date, random: string): string {
  const iso = now.toISOString(); // 2026-11-22T08:00:00.000Z
  const stamp = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return `${stamp}-${random}`;
}
