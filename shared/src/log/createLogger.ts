import { type Logger, pino } from "pino";

export type { Logger };

/**
 * Field names whose values are secrets wherever they appear in a log line, up to two objects
 * deep (pino's redaction takes explicit paths): tokens, passphrases, keys. Not `key` itself: the
 * object store logs object keys.
 */
export const SECRET_FIELDS = [
  "token",
  "adminToken",
  "enrollToken",
  "enrollmentToken",
  "bearer",
  "authorization",
  "passphrase",
  "password",
  "secret",
  "secretAccessKey",
  "sessionToken",
  "privateKey",
  "keyPem",
  "identityKeyPem",
  "clientKey",
  "serverKey",
] as const;

const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

/** JSON logs to stderr (stdout stays free for CLI output). Level from CAIRN_LOG_LEVEL, default info. */
export function createLogger(
  name: string,
  level = process.env.CAIRN_LOG_LEVEL ?? "info",
  destination: pino.DestinationStream = pino.destination(2),
): Logger {
  return pino(
    { name, level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
    destination,
  );
}
