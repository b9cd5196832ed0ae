import { join } from "node:path";
import { z } from "zod";
import { loadYamlConfig } from "../../../shared/src/config/loadYamlConfig.js";
import { parseYamlConfig } from "../../../shared/src/config/parseYamlConfig.js";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { DEFAULT_POLICY_LIMITS } from "../policy/Policy.js";

/** The coordinator's configuration file (YAML), validated; every field has a documented default. */
export const coordinatorConfigSchema = z
  .object({
    /** Database, CA and certificates live here. */
    stateDir: z.string().min(1).default("/var/lib/cairn-coordinator"),
    /** gRPC listen address (agents and the CLI). */
    listen: z.string().min(1).default("127.0.0.1:7450"),
    /** Prometheus endpoint; "" disables it. */
    metricsListen: z.string().default("127.0.0.1:9450"),
    /** SQLite file; default <stateDir>/coordinator.db. */
    database: z.string().min(1).optional(),
    heartbeatIntervalSeconds: z.number().int().min(1).max(300).default(5),
    /** An agent silent for this long is marked lost and its running jobs interrupted. */
    lostAfterSeconds: z.number().int().min(2).max(3600).default(20),
    schedulerTickMs: z.number().int().min(50).max(60_000).default(1000),
    /** Attempts per job, the first run included. */
    maxAttempts: z.number().int().min(1).max(20).default(3),
    retryBaseMs: z.number().int().min(10).default(30_000),
    retryMaxMs: z
      .number()
      .int()
      .min(10)
      .default(15 * 60_000),
    /** Repository reach (docs/transfer-paths.md §2): how often every online agent probes. */
    reach: z
      .object({
        probeIntervalSeconds: z
          .number()
          .int()
          .min(10)
          .max(7 * 86_400)
          .default(900),
      })
      .strict()
      .prefault({}),
    /** Bounds every policy document is validated against (on apply, and when a stored one is read). */
    policies: z
      .object({
        /** Crons firing more often than this are refused (schedule, verify and gc alike). */
        minCronIntervalSeconds: z
          .number()
          .int()
          .min(1)
          .max(86_400)
          .default(DEFAULT_POLICY_LIMITS.minCronIntervalSeconds),
      })
      .strict()
      .prefault({}),
    /** Admin tokens (issue 24): every token expires. */
    tokens: z
      .object({
        /** Lifetime of a token created without --ttl. */
        defaultTtlDays: z.number().int().min(1).max(3650).default(90),
        /** The longest lifetime a token may be given. */
        maxTtlDays: z.number().int().min(1).max(3650).default(365),
      })
      .strict()
      .refine((t) => t.defaultTtlDays <= t.maxTtlDays, {
        message: "tokens.defaultTtlDays must not exceed tokens.maxTtlDays",
      })
      .prefault({}),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  })
  .strict();

export type CoordinatorConfig = z.infer<typeof coordinatorConfigSchema>;

export function databasePath(c: CoordinatorConfig): string {
  return c.database ?? join(c.stateDir, "coordinator.db");
}

export function pkiDir(c: CoordinatorConfig): string {
  return join(c.stateDir, "pki");
}

export function parseCoordinatorConfig(text: string, source: string): CoordinatorConfig {
  const c = parseYamlConfig(coordinatorConfigSchema, text, source, "coordinator");
  if (c.lostAfterSeconds <= c.heartbeatIntervalSeconds)
    throw new CairnError(
      "invalid-argument",
      `invalid coordinator config ${source}: lostAfterSeconds (${c.lostAfterSeconds}) must be larger than heartbeatIntervalSeconds (${c.heartbeatIntervalSeconds})`,
    );
  return c;
}

export function loadCoordinatorConfig(path: string | undefined): Promise<CoordinatorConfig> {
  return loadYamlConfig(path, "coordinator", parseCoordinatorConfig);
}
