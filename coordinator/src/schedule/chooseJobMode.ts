import type { Policy } from "../policy/Policy.js";

/**
 * The mode of a policy's next run for one VM. "A full every N" means runs 1, N+1, 2N+1, ... are
 * full (fullEvery 0: only the first). `full` policies make copies: full backups that keep no
 * checkpoint.
 */
export function chooseJobMode(
  mode: Policy["mode"],
  history: { fullCount: number; runsSinceFull: number },
): "full" | "incremental" | "differential" | "copy" {
  if (mode.kind === "full") return "copy";
  if (history.fullCount === 0) return "full";
  if (mode.fullEvery > 0 && history.runsSinceFull + 1 >= mode.fullEvery) return "full";
  return mode.kind;
}
