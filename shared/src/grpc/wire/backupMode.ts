import { BackupMode as WireBackupMode } from "../../gen/cairn/v1/common.js";
import { enumMapping } from "./enumMapping.js";

/** What a backup job reads and which checkpoint it leaves (see BackupMode in common.proto). */
export type BackupMode = "full" | "incremental" | "differential" | "copy" | "auto";

export const backupMode = enumMapping<BackupMode, WireBackupMode>("a backup mode", {
  full: WireBackupMode.BACKUP_MODE_FULL,
  incremental: WireBackupMode.BACKUP_MODE_INCREMENTAL,
  differential: WireBackupMode.BACKUP_MODE_DIFFERENTIAL,
  copy: WireBackupMode.BACKUP_MODE_COPY,
  auto: WireBackupMode.BACKUP_MODE_AUTO,
});
