import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";

/**
 * The checkpoint a sealed backup made, with libvirt's XML for the ledger. Sealed already: a lost
 * lookup costs the ledger this checkpoint's XML, not the backup, so it never throws.
 */
export async function sealedCheckpoint(
  hypervisor: Hypervisor,
  domain: string,
  name: string | null,
  log: Logger,
  signal: AbortSignal,
): Promise<CheckpointInfo | undefined> {
  if (!name) return undefined;
  return hypervisor.checkpoint(domain, name, signal).catch((err: unknown) => {
    log.warn({ err, domain, checkpoint: name }, "checkpoint XML not read");
    return undefined;
  });
}
