import { createHash, randomBytes } from "node:crypto";

/** sha256 hex of a token: what the coordinator stores and looks up (never the token itself). */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new bearer token (`adm_…` for people and scripts, `enr_…` for one-time enrollment) and its hash. */
export function newSecretToken(prefix: "enr" | "adm"): { token: string; hash: string } {
  const token = `${prefix}_${randomBytes(32).toString("base64url")}`;
  return { token, hash: hashToken(token) };
}
