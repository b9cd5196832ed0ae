import { CairnError } from "../errors/CairnError.js";
import { EXIT, exitCodeFor } from "./exitCodes.js";

/** Runs a CLI action: errors become a message that says what to do, and a meaningful exit code. */
export async function runCli(action: () => Promise<void>, opts: { json?: boolean } = {}): Promise<never> {
  try {
    await action();
    process.exit(EXIT.ok);
  } catch (err) {
    const e =
      err instanceof CairnError
        ? err
        : new CairnError("internal", `unexpected error: ${(err as Error)?.message ?? String(err)}`, {
            cause: err,
          });
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null } })}\n`,
      );
    }
    process.stderr.write(`cairn: ${e.message}\n${e.hint ? `  hint: ${e.hint}\n` : ""}`);
    if (e.code === "internal" && process.env.CAIRN_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    process.exit(exitCodeFor(e.code));
  }
}

/** Reads the repository passphrase from a file or CAIRN_PASSPHRASE; undefined when neither is set. */
export async function readPassphrase(file: string | undefined): Promise<string | undefined> {
  if (file) {
    const { readFile } = await import("node:fs/promises");
    const text = await readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
      throw new CairnError("not-found", `cannot read passphrase file ${file}: ${e.code ?? e.message}`);
    });
    return text.replace(/\r?\n$/, "");
  }
  return process.env.CAIRN_PASSPHRASE || undefined;
}

/** Parses repeated `key=value` options. */
export function parseLabels(values: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const i = v.indexOf("=");
    if (i <= 0) throw new CairnError("invalid-argument", `label ${JSON.stringify(v)} is not key=value`);
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}
