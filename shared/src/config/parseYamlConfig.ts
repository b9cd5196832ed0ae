import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { CairnError } from "../errors/CairnError.js";

/**
 * Parses a YAML config document of one of Cairn's daemons against its schema; an empty document
 * gives the defaults. Errors are invalid-argument and name the field and the reason.
 */
export function parseYamlConfig<S extends z.ZodType>(
  schema: S,
  text: string,
  source: string,
  /** "agent", "coordinator": names the config in messages and the README section in the hint. */
  daemon: string,
): z.output<S> {
  let raw: unknown;
  try {
    raw = text.trim() ? parseYaml(text) : {};
  } catch (e) {
    throw new CairnError("invalid-argument", `${source} is not valid YAML: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(top level)"}: ${i.message}`).join("; ");
    throw new CairnError("invalid-argument", `invalid ${daemon} config ${source}: ${issues}`, {
      hint: `fix the named fields (see the ${daemon} configuration reference in README)`,
    });
  }
  return r.data;
}
