import { Cron } from "croner";
import { z } from "zod";
import { cronProblem } from "../schedule/cronProblem.js";
import { Glob, MAX_GLOB_LENGTH } from "./Glob.js";

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;
const HOST_GLOB = /^[A-Za-z0-9.\-_*?[\]!]{1,63}$/;
const count = z.number().int().min(0).max(100_000);

function validCron(pattern: string): string | undefined {
  try {
    new Cron(pattern, { paused: true });
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function validZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The highest bandwidth a policy may set: 1 TiB/s, beyond any link; more is a typo, not a limit. */
export const MAX_BANDWIDTH = 2 ** 40;

/**
 * "100MiB/s", "1.5GB/s", 1048576 → whole bytes per second; 0 means no limit. Undefined when
 * unparseable, not finite, between 0 and 1 B/s (it would round to "no limit") or above
 * MAX_BANDWIDTH (`99…9TiB/s` is Infinity, and every job of the policy failed on it).
 */
export function parseBandwidth(v: number | string): number | undefined {
  let n: number;
  if (typeof v === "number") n = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(|k|K|M|G|T)(i?)B\/s\s*$/.exec(v);
    if (!m) return undefined;
    const unit = { "": 0, k: 1, K: 1, M: 2, G: 3, T: 4 }[m[2] as string] as number;
    n = Number(m[1]) * (m[3] ? 1024 : 1000) ** unit;
  }
  const whole = Math.floor(n);
  if (!Number.isFinite(n) || n < 0 || (n > 0 && whole === 0) || whole > MAX_BANDWIDTH) return undefined;
  return whole;
}

/** What the coordinator's configuration bounds in every policy. */
export interface PolicyLimits {
  /** Crons whose fires come closer than this are refused (config `policies.minCronIntervalSeconds`). */
  minCronIntervalSeconds: number;
}

export const DEFAULT_POLICY_LIMITS: PolicyLimits = { minCronIntervalSeconds: 300 };

/** A valid cron that fires, and never more often than the limits allow. */
const cronSchema = (limits: PolicyLimits) =>
  z.string().superRefine((v, ctx) => {
    const err = validCron(v);
    const problem = err === undefined ? cronProblem(v, limits.minCronIntervalSeconds) : undefined;
    if (err !== undefined || problem !== undefined)
      ctx.addIssue({
        code: "custom",
        message:
          err !== undefined
            ? `${JSON.stringify(v)} is not a valid cron expression (${err})`
            : `${JSON.stringify(v)} ${problem}`,
      });
  });

/** A glob compiled once, here; what is wrong with an invalid one is said with the pattern. */
const globSchema = (inner: z.ZodString) =>
  inner.transform((v, ctx) => {
    try {
      return Glob.compile(v);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  });

/** "10%", 10, "100%" → 10, 10, 100; undefined outside 0–100. */
export function parsePercent(v: number | string): number | undefined {
  const n = typeof v === "number" ? v : /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v)?.[1];
  const x = n === undefined ? Number.NaN : Number(n);
  return Number.isFinite(x) && x >= 0 && x <= 100 ? x : undefined;
}

/** The policy document (YAML) as validated: strict, every field named in errors. */
const buildSchema = (limits: PolicyLimits) =>
  z
    .object({
      name: z.string().regex(NAME, "must be lowercase letters, digits, '.', '-', '_' (at most 63)"),
      selector: z
        .object({
          names: z.array(z.string().min(1)).default([]),
          globs: z.array(globSchema(z.string().max(MAX_GLOB_LENGTH))).default([]),
          labels: z.record(z.string(), z.string()).default({}),
        })
        .strict()
        .refine((s) => s.names.length + s.globs.length + Object.keys(s.labels).length > 0, {
          message: "give at least one of names, globs, labels (an empty selector would select every VM)",
        }),
      schedule: z
        .object({
          cron: cronSchema(limits),
          timezone: z
            .string()
            .default("UTC")
            .superRefine((v, ctx) => {
              if (!validZone(v))
                ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is not an IANA time zone` });
            }),
        })
        .strict(),
      mode: z.discriminatedUnion("kind", [
        z.object({ kind: z.literal("incremental"), fullEvery: count.default(0) }).strict(),
        z.object({ kind: z.literal("differential"), fullEvery: count.default(0) }).strict(),
        z.object({ kind: z.literal("full") }).strict(),
      ]),
      quiesce: z.enum(["required", "preferred", "off"]).default("preferred"),
      retention: z
        .object({
          keepLast: count.default(0),
          hourly: count.default(0),
          daily: count.default(0),
          weekly: count.default(0),
          monthly: count.default(0),
          yearly: count.default(0),
        })
        .strict()
        .refine((r) => Object.values(r).some((n) => n > 0), {
          message: "keep something: set at least one rule above 0",
        })
        .default({ keepLast: 7, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }),
      repository: z.string().regex(NAME, "must name a registered repository"),
      // Bytes per second. Not z.number(): YAML reads 400 nines as Infinity, which deserves this
      // message rather than "Invalid input".
      bandwidth: z
        .unknown()
        .optional()
        .transform((v, ctx) => {
          if (v === undefined) return undefined;
          const bps = typeof v === "number" || typeof v === "string" ? parseBandwidth(v) : undefined;
          if (bps === undefined) {
            ctx.addIssue({
              code: "custom",
              message: `must be bytes per second or like "100MiB/s", "1GB/s": finite, at least 1 B/s (0: no limit), at most 1TiB/s`,
            });
            return z.NEVER;
          }
          return bps;
        }),
      concurrency: z
        .object({
          perHost: z.number().int().min(1).max(1000).default(2),
          perRepository: z.number().int().min(1).max(10_000).default(4),
          global: z.number().int().min(1).max(100_000).default(8),
        })
        .strict()
        .prefault({}),
      window: z
        .object({
          start: z.string().regex(HHMM, 'must be "HH:MM"'),
          end: z.string().regex(HHMM, 'must be "HH:MM"'),
        })
        .strict()
        .optional(),
      maintenance: z
        .object({
          // Verify the policy's repository on this cron (policy timezone): structure every time, and
          // with readData that share of the chunks, a different slice each run.
          verify: cronSchema(limits).optional(),
          readData: z
            .union([z.number(), z.string()])
            .optional()
            .transform((v, ctx) => {
              const pct = parsePercent(v ?? 0);
              if (pct === undefined) {
                ctx.addIssue({ code: "custom", message: 'must be a percentage from 0% to 100%, e.g. "10%"' });
                return z.NEVER;
              }
              return pct;
            }),
          gc: cronSchema(limits).optional(),
        })
        .strict()
        .optional(),
      // How backups travel (docs/transfer-paths.md §3): lan-free (the VM's host writes the repository
      // itself), network (a mover reads the VM host's export), or auto (lan-free when it can).
      transfer: z.enum(["auto", "lan-free", "network"]).default("auto"),
      // Which movers may read this policy's VMs (host ids); none listed: every mover.
      movers: z
        .object({
          names: z.array(z.string().regex(HOST_ID, "must be a host id")).default([]),
          // Host ids only hold these characters, and a glob longer than a host id matches nothing:
          // bounded, so matching stays cheap whatever an operator writes.
          globs: z
            .array(
              globSchema(
                z.string().regex(HOST_GLOB, "must be a glob of host ids (letters, digits, . - _ * ? [ ] !)"),
              ),
            )
            .default([]),
        })
        .strict()
        .prefault({}),
      priority: z.number().int().min(0).max(100).default(50),
      disabled: z.boolean().default(false),
    })
    .strict();

const schemas = new Map<number, ReturnType<typeof buildSchema>>();

/** The schema under these limits (built once per limit). */
export function policySchema(limits: PolicyLimits): ReturnType<typeof buildSchema> {
  let s = schemas.get(limits.minCronIntervalSeconds);
  if (!s) {
    s = buildSchema(limits);
    schemas.set(limits.minCronIntervalSeconds, s);
  }
  return s;
}

type Parsed = z.infer<ReturnType<typeof buildSchema>>;

/** A validated, normalized policy. */
export interface Policy extends Omit<Parsed, "bandwidth"> {
  /** 0 = unlimited. */
  bandwidthBytesPerSecond: number;
}
