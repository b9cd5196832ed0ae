import { randomBytes } from "node:crypto";
import type { BackupMode } from "../../../shared/src/grpc/wire/backupMode.js";
import type { Policy } from "../policy/Policy.js";
import type { JobRecord, VmRecord } from "../store/records.js";

// A random per-process part and a counter: a policy firing over 10,000 VMs makes 10,000 ids in the
// same second, and 24 random bits alone collided in every such batch (birthday bound).
const processPart = randomBytes(3).toString("hex");
let counter = randomBytes(3).readUIntBE(0, 3);

/** Job ids sort by creation time and say when they were made: job-20261122T120000-3f9a1c00a7b2. */
export function newJobId(nowMs: number): string {
  const t = new Date(nowMs).toISOString().replace(/[-:]/g, "").slice(0, 15);
  counter = (counter + 1) % 0x1000000;
  return `job-${t}-${processPart}${counter.toString(16).padStart(6, "0")}`;
}

export function newJob(
  vm: Pick<VmRecord, "uuid" | "name" | "hostId">,
  policy: Policy,
  mode: BackupMode,
  trigger: JobRecord["trigger"],
  opts: { nowMs: number; maxAttempts: number; reason: string },
): JobRecord {
  return newJobRecord(
    {
      kind: "backup",
      vmUuid: vm.uuid,
      vmName: vm.name,
      hostId: vm.hostId,
      policy: policy.name,
      repository: policy.repository,
      mode,
      quiesce: policy.quiesce,
      trigger,
      priority: policy.priority,
      limits: { ...policy.concurrency },
      bandwidthBytesPerSecond: policy.bandwidthBytesPerSecond,
    },
    opts,
  );
}

type JobFields = Pick<
  JobRecord,
  | "kind"
  | "vmUuid"
  | "vmName"
  | "hostId"
  | "policy"
  | "repository"
  | "mode"
  | "quiesce"
  | "trigger"
  | "priority"
  | "limits"
  | "bandwidthBytesPerSecond"
  | "task"
>;

/**
 * A new job of any kind: queued, first attempt, nothing run yet. One object literal with every
 * field: a policy firing over 10,000 VMs makes 10,000 of them in one pass, and objects built by
 * spreading into a literal took twice as long to make and to serialize (bench:coordinator).
 */
export function newJobRecord(
  f: JobFields,
  opts: { nowMs: number; maxAttempts: number; reason: string },
): JobRecord {
  return {
    id: newJobId(opts.nowMs),
    kind: f.kind,
    vmUuid: f.vmUuid,
    vmName: f.vmName,
    hostId: f.hostId,
    policy: f.policy,
    repository: f.repository,
    mode: f.mode,
    quiesce: f.quiesce,
    trigger: f.trigger,
    state: "queued",
    attempt: 1,
    maxAttempts: opts.maxAttempts,
    reason: opts.reason,
    priority: f.priority,
    limits: f.limits,
    bandwidthBytesPerSecond: f.bandwidthBytesPerSecond,
    createdMs: opts.nowMs,
    updatedMs: opts.nowMs,
    notBeforeMs: 0,
    startedMs: null,
    finishedMs: null,
    snapshotId: null,
    diskKinds: {},
    phase: "",
    task: f.task,
    report: null,
  };
}

/** Whether a finished job started a new chain (what "a full every N" counts). */
export function wasFull(job: Pick<JobRecord, "mode" | "diskKinds">): boolean {
  if (job.mode === "full" || job.mode === "copy") return true;
  const kinds = Object.values(job.diskKinds);
  return kinds.length > 0 && kinds.every((k) => k.startsWith("full"));
}
