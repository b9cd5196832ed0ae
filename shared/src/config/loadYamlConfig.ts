import { readFile } from "node:fs/promises";
import { CairnError } from "../errors/CairnError.js";

/** Reads a daemon's config file and hands it to its parser; no path: the parser's defaults. */
export async function loadYamlConfig<T>(
  path: string | undefined,
  daemon: string,
  parse: (text: string, source: string) => T,
): Promise<T> {
  if (!path) return parse("", "(defaults)");
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new CairnError("not-found", `cannot read ${daemon} config ${path}: ${e.code ?? e.message}`, {
      cause: e,
    });
  });
  return parse(text, path);
}
