import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Policy, PolicyLimits } from "../policy/Policy.js";
import { parsePolicyYaml } from "../policy/parsePolicyYaml.js";
import type { PolicyRecord } from "../store/records.js";

type Parsed = { policy: Policy; error?: undefined } | { policy?: undefined; error: CairnError };

/**
 * Parsed policies, re-parsed only when a policy document changes. Stored documents are checked
 * against the coordinator's current limits too: one applied before a check existed (a glob like
 * `[z-a]`), or before the limits were tightened, does not parse, and says why.
 */
export class PolicyCache {
  private readonly parsed = new Map<string, { updatedMs: number } & Parsed>();

  constructor(
    private readonly log: Logger,
    private readonly limits: PolicyLimits,
  ) {}

  /** The policy, or undefined when its stored document no longer validates. */
  get(rec: PolicyRecord): Policy | undefined {
    return this.parse(rec).policy;
  }

  /** The policy; throws why its stored document no longer validates. */
  require(rec: PolicyRecord): Policy {
    const p = this.parse(rec);
    if (p.error) throw p.error;
    return p.policy;
  }

  private parse(rec: PolicyRecord): Parsed {
    const hit = this.parsed.get(rec.name);
    if (hit && hit.updatedMs === rec.updatedMs) return hit;
    let entry: Parsed;
    try {
      entry = { policy: parsePolicyYaml(rec.yaml, `policy ${rec.name}`, this.limits) };
    } catch (err) {
      this.log.error({ err, policy: rec.name }, "stored policy does not validate; it is skipped");
      entry = {
        error:
          err instanceof CairnError
            ? err
            : new CairnError("invalid-argument", `policy ${rec.name}: ${(err as Error).message}`),
      };
    }
    this.parsed.set(rec.name, { updatedMs: rec.updatedMs, ...entry });
    return entry;
  }
}
