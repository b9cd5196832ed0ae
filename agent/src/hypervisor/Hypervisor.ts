import type { DomainInfo } from "./DomainInfo.js";
import type { BackupJobInfo, CheckpointInfo } from "./parseCheckpointXml.js";

export interface LiveBitmap {
  name: string;
  inconsistent: boolean;
  /**
   * Tracking writes now (libvirt 9.0 accepts an incremental only from a recording bitmap).
   * Adapters that read QEMU say it; undefined where nobody asked (bitmaps read from an image).
   */
  recording?: boolean;
}

/**
 * Port: the host's hypervisor as the agent sees it.
 *
 * Contract:
 * - Every method takes an AbortSignal and gives up with CairnError("aborted") when it fires.
 * - Failures are CairnError: "unavailable" when the hypervisor cannot be reached (retryable),
 *   "not-found" for an unknown domain or checkpoint, "failed-precondition" when the domain's state
 *   forbids it (e.g. a backup job already runs, or the domain is not running).
 * - Results are snapshots of the moment; nothing is cached across calls.
 * - Domains are named by name or uuid.
 */
export interface Hypervisor {
  /** libvirt and QEMU versions, e.g. { libvirt: "9.0.0", qemu: "7.2.0" }. */
  versions(signal: AbortSignal): Promise<{ libvirt: string; qemu: string }>;
  /** Every domain libvirt knows, running or not, with its disks. */
  listDomains(signal: AbortSignal): Promise<DomainInfo[]>;
  /**
   * One domain by name or uuid, as listDomains reports it, or undefined when libvirt has none.
   * Costs a few calls whatever the host runs (listDomains costs two per domain).
   */
  domain(nameOrUuid: string, signal: AbortSignal): Promise<DomainInfo | undefined>;
  /** The domain's XML; `inactive` gives the persistent definition (what a restore redefines). */
  domainXml(domain: string, opts: { inactive: boolean }, signal: AbortSignal): Promise<string>;

  /** Checkpoints, parents before children. */
  listCheckpoints(domain: string, signal: AbortSignal): Promise<CheckpointInfo[]>;
  /** One checkpoint with the XML libvirt gives for it (one call), or undefined when there is none. */
  checkpoint(domain: string, name: string, signal: AbortSignal): Promise<CheckpointInfo | undefined>;
  /** Deletes a checkpoint (merging its bitmap into its parent's); metadataOnly leaves bitmaps alone. */
  deleteCheckpoint(
    domain: string,
    name: string,
    opts: { metadataOnly: boolean },
    signal: AbortSignal,
  ): Promise<void>;
  /**
   * Creates a checkpoint now (a new dirty bitmap on each disk its XML names), child of the
   * domain's current checkpoint. Running domains only. A backup made right after it, incremental
   * from the previous checkpoint, leaves the new bitmap covering a superset of what changes after
   * the backup's point in time, which is what the quiesced path needs: the checkpoint is made
   * before the guest is frozen, keeping libvirt's checkpoint validation out of the freeze window.
   * "failed-precondition" when a checkpoint of that name exists.
   */
  createCheckpoint(domain: string, xml: string, signal: AbortSignal): Promise<void>;
  /**
   * Re-creates checkpoint metadata from its XML (after migration, or for bitmaps made offline).
   * `validate` checks the bitmaps exist in the running QEMU (running domains only).
   */
  redefineCheckpoint(
    domain: string,
    xml: string,
    opts: { validate: boolean },
    signal: AbortSignal,
  ): Promise<void>;

  /**
   * Starts a pull-mode backup job (NBD export of the point-in-time view), atomically creating the
   * checkpoint when `checkpointXml` is given. At most one backup job per domain.
   * `reuseScratch`: the scratch images named in the backup XML exist already (made by the caller
   * before the guest was frozen), so libvirt does not create them inside the freeze window.
   * `jobChecked`: the caller made sure no backup job runs (before freezing); skip that round trip.
   */
  beginPullBackup(
    domain: string,
    docs: { backupXml: string; checkpointXml?: string; reuseScratch?: boolean; jobChecked?: boolean },
    signal: AbortSignal,
  ): Promise<void>;
  /**
   * The libvirt job holding the domain: "" none (also for a domain that does not run), "backup",
   * "migration" (outgoing on the source, incoming on the destination), or libvirt's operation name
   * in lower case ("snapshot", "dump", …). "not-found" for an unknown domain.
   */
  activeJob(domain: string, signal: AbortSignal): Promise<string>;
  /** The running backup job, or undefined when there is none. */
  backupJob(domain: string, signal: AbortSignal): Promise<BackupJobInfo | undefined>;
  /** Ends the backup job (pull backups end this way); no error when there is none. */
  endBackup(domain: string, signal: AbortSignal): Promise<void>;
  /**
   * The dirty bitmaps a running domain's QEMU actually has, per disk target. After QEMU stopped
   * uncleanly a checkpoint's bitmap is missing (never saved) or marked inconsistent: incrementals
   * from it would be wrong.
   */
  liveBitmaps(domain: string, signal: AbortSignal): Promise<Map<string, LiveBitmap[]>>;
  /**
   * Removes dirty bitmaps QEMU marks inconsistent (they can never become valid again, and would
   * force every later backup of their disk to read in full). Returns "target/bitmap" names removed.
   */
  removeInconsistentBitmaps(domain: string, signal: AbortSignal): Promise<string[]>;
}
