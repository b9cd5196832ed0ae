import type { BackupResult, RunBackupResponse } from "../../../shared/src/gen/cairn/v1/agent.js";
import type { Progress } from "../../../shared/src/gen/cairn/v1/common.js";
import { backupJobState } from "../../../shared/src/grpc/wire/backupJobState.js";
import { checkpointRecord } from "../../../shared/src/grpc/wire/checkpointRecord.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import type { BackupJobState } from "../backup/BackupJobState.js";
import type { BackupProgress, PendingCheckpoint } from "../backup/BackupRequest.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import type { JobFeed } from "../jobs/JobFeed.js";

/** A sealed snapshot as the wire's BackupResult (RunBackup's and ReadExport's last event). */
export function backupResultOf(
  m: SnapshotManifest,
  freezeMs: number | undefined,
  checkpoint: CheckpointInfo | undefined,
  prunedCheckpoints: readonly string[],
): BackupResult {
  return {
    snapshotId: m.id,
    diskKinds: Object.fromEntries(
      m.disks.map((d) => [d.target, d.fullReason ? `${d.kind}: ${d.fullReason}` : d.kind]),
    ),
    quiesced: m.consistency.kind === "quiesced",
    consistencyReason: m.consistency.kind === "crash-consistent" ? m.consistency.reason : "",
    bytesRead: BigInt(m.stats.bytesRead),
    bytesNew: BigInt(m.stats.bytesNew),
    bytesStored: BigInt(m.stats.bytesStored),
    freezeMs: freezeMs ?? 0,
    manifestJson: JSON.stringify(m),
    checkpoint: checkpoint ? checkpointRecord.toWire(checkpoint) : undefined,
    prunedCheckpoints: [...prunedCheckpoints],
  };
}

export function backupResultEvent(
  m: SnapshotManifest,
  freezeMs: number | undefined,
  checkpoint: CheckpointInfo | undefined,
  prunedCheckpoints: readonly string[],
): RunBackupResponse["event"] {
  return { $case: "result", value: backupResultOf(m, freezeMs, checkpoint, prunedCheckpoints) };
}

export function progressToWire(p: BackupProgress): Progress {
  return {
    bytesDone: BigInt(p.bytesDone),
    bytesTotal: BigInt(p.bytesTotal),
    rate: p.rate,
    etaSeconds: p.etaSeconds,
    phase: p.phase,
  };
}

/** A backup job's states, pending checkpoint and progress, published on its feed. */
export function backupFeedCallbacks(jobId: string, f: JobFeed<RunBackupResponse>) {
  return {
    onState: (s: BackupJobState) =>
      f.publish("state", { jobId, event: { $case: "jobState", value: backupJobState.toWire(s) } }),
    onCheckpoint: (c: PendingCheckpoint) =>
      f.publish("checkpoint", {
        jobId,
        event: { $case: "checkpointPending", value: checkpointRecord.pendingToWire(c) },
      }),
    onProgress: (p: BackupProgress) =>
      f.publish("progress", { jobId, event: { $case: "progress", value: progressToWire(p) } }),
  };
}
