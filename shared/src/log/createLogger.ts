import { type Logger, pino } from "pino";

export type { Logger };

/** JSON logs to stderr (stdout stays free for CLI output). Level from CAIRN_LOG_LEVEL, default info. */
export function createLogger(name: string, level = process.env.CAIRN_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}
