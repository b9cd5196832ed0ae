import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * JSON with object keys sorted at every level and no whitespace (format §3.1): the same bytes for
 * the same config content however it was formatted when stored.
 */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * The config's MAC (format §3.1): HMAC-SHA-256 with the config key over "cairn/2/config\n" and the
 * canonical JSON of every field of `content` but `mac`, also fields this code does not know.
 */
export function configMac(configKey: Buffer, content: Record<string, unknown>): string {
  const { mac: _mac, ...rest } = content;
  return createHmac("sha256", configKey)
    .update(`cairn/2/config\n${canonicalJson(rest)}`)
    .digest("hex");
}

/** True when `content.mac` is the MAC of the rest of it (constant-time compare). */
export function configMacMatches(configKey: Buffer, content: Record<string, unknown>): boolean {
  const given = content["mac"];
  if (typeof given !== "string" || !/^[0-9a-f]{64}$/.test(given)) return false;
  return timingSafeEqual(Buffer.from(given, "hex"), Buffer.from(configMac(configKey, content), "hex"));
}
