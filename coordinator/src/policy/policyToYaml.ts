import { stringify } from "yaml";
import type { Policy } from "./Policy.js";

/** The normalized policy as a document that parses back to the same policy. */
export function policyToYaml(p: Policy): string {
  const { bandwidthBytesPerSecond, window, selector, movers, ...rest } = p;
  return stringify({
    ...rest,
    selector: { ...selector, globs: selector.globs.map((g) => g.source) },
    movers: { ...movers, globs: movers.globs.map((g) => g.source) },
    ...(window ? { window } : {}),
    ...(bandwidthBytesPerSecond ? { bandwidth: bandwidthBytesPerSecond } : {}),
  });
}
