import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Policy } from "../policy/Policy.js";
import { parsePolicyYaml } from "../policy/parsePolicyYaml.js";
import type { PolicyRecord } from "../store/records.js";

/** Parsed policies, re-parsed only when a policy document changes. */
export class PolicyCache {
  private readonly parsed = new Map<string, { updatedMs: number; policy: Policy | undefined }>();

  constructor(private readonly log: Logger) {}

  get(rec: PolicyRecord): Policy | undefined {
    const hit = this.parsed.get(rec.name);
    if (hit && hit.updatedMs === rec.updatedMs) return hit.policy;
    let policy: Policy | undefined;
    try {
      policy = parsePolicyYaml(rec.yaml, `policy ${rec.name}`);
    } catch (err) {
      // Stored documents were validated on apply; this only happens after a downgrade.
      this.log.error({ err, policy: rec.name }, "stored policy no longer parses; it is skipped");
    }
    this.parsed.set(rec.name, { updatedMs: rec.updatedMs, policy });
    return policy;
  }
}
