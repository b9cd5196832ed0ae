import { randomBytes } from "node:crypto";

/** A unique, XML- and bitmap-safe name for the checkpoint a backup makes: cairn-<UTC time>-<random>. */
export function newCheckpointName(now = new Date()): string {
  return `cairn-${now.toISOString().replace(/[-:.]/g, "").slice(0, 15)}Z-${randomBytes(3).toString("hex")}`;
}
