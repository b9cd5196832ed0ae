import { BackupJobState as WireBackupJobState } from "../../gen/cairn/v1/agent.js";
import { enumMapping } from "./enumMapping.js";

/** A backup job's lifecycle on the agent; the transitions are in agent/src/backup/BackupJobState.ts. */
export type BackupJobState =
  | "planning"
  | "quiescing" // pre-freeze hooks, freeze, begin the export, thaw
  | "reading" // changed blocks from the NBD export into the repository
  | "sealing"
  | "succeeded"
  | "failed";

export const backupJobState = enumMapping<BackupJobState, WireBackupJobState>("a backup job state", {
  planning: WireBackupJobState.BACKUP_JOB_STATE_PLANNING,
  quiescing: WireBackupJobState.BACKUP_JOB_STATE_QUIESCING,
  reading: WireBackupJobState.BACKUP_JOB_STATE_READING,
  sealing: WireBackupJobState.BACKUP_JOB_STATE_SEALING,
  succeeded: WireBackupJobState.BACKUP_JOB_STATE_SUCCEEDED,
  failed: WireBackupJobState.BACKUP_JOB_STATE_FAILED,
});
