import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import type { BackupMode } from "../../../../../shared/src/grpc/wire/backupMode.js";

/** An explicit incremental needs an earlier backup; auto falls back to a full with the reason instead. */
export function requireHistoryForIncremental(mode: BackupMode, historyLength: number, domain: string): void {
  if (mode === "incremental" && historyLength === 0) {
    throw new CairnError("failed-precondition", `no earlier backup of ${domain} to be incremental to`, {
      hint: "run a full backup first, or use mode auto",
    });
  }
}
