import { parse } from "yaml";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { DEFAULT_POLICY_LIMITS, type Policy, type PolicyLimits, policySchema } from "./Policy.js";

/**
 * Parses and validates a policy document under the coordinator's limits; errors say
 * `<source>: <field.path>: <reason>`.
 */
export function parsePolicyYaml(
  text: string,
  source: string,
  limits: PolicyLimits = DEFAULT_POLICY_LIMITS,
): Policy {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new CairnError("invalid-argument", `${source}: not valid YAML: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new CairnError(
      "invalid-argument",
      `${source}: a policy is a YAML mapping (name, selector, schedule, ...)`,
    );
  const r = policySchema(limits).safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => {
      const path = i.path.join(".");
      const keys = i.code === "unrecognized_keys" ? ` ${i.keys.join(", ")}` : "";
      return `${path || "(top level)"}:${keys} ${i.message}`;
    });
    throw new CairnError("invalid-argument", `${source}: ${issues.join("; ")}`, {
      hint: "fix the named fields; see the policy reference in README",
    });
  }
  const { bandwidth, ...rest } = r.data;
  return { ...rest, bandwidthBytesPerSecond: bandwidth ?? 0 };
}
