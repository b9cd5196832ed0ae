import { stringify } from "yaml";
import type { Policy } from "./Policy.js";

/** The normalized policy as a document that parses back to the same policy. */
export function policyToYaml(p: Policy): string {
  const { bandwidthBytesPerSecond, window, ...rest } = p;
  return stringify({
    ...rest,
    ...(window ? { window } : {}),
    ...(bandwidthBytesPerSecond ? { bandwidth: bandwidthBytesPerSecond } : {}),
  });
}
