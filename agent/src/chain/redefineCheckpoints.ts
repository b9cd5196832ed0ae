import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { parseCheckpointXml } from "../hypervisor/parseCheckpointXml.js";
import { checkChainIds } from "./checkChainIds.js";
import { type DiskChainVerdict, judgeChain } from "./judgeChain.js";

export interface RedefineOutcome {
  redefined: string[];
  alreadyPresent: string[];
  verdicts: DiskChainVerdict[];
  elapsedMs: number;
}

/**
 * After a migration (or a restart on another host): gives libvirt back the ledger's checkpoints,
 * oldest first, each validated against the running QEMU (`--redefine-validate`; never without:
 * an unvalidated checkpoint whose bitmap is gone would make the next incremental wrong), then
 * judges each (checkpoint, disk). One refusal does not stop the others.
 */
export async function redefineCheckpoints(
  deps: { hypervisor: Hypervisor; log: Logger },
  req: { domainUuid: string; checkpoints: readonly { name: string; xml: string }[] },
  signal: AbortSignal,
): Promise<RedefineOutcome> {
  const started = performance.now();
  checkChainIds({ domainUuid: req.domainUuid, checkpoints: req.checkpoints.map((c) => c.name) });
  // Everything is checked before libvirt sees any of it.
  const parsed = req.checkpoints.map((c) => {
    let info: ReturnType<typeof parseCheckpointXml>;
    try {
      info = parseCheckpointXml(c.xml);
    } catch (err) {
      throw new CairnError("invalid-argument", `checkpoint ${c.name}: ${(err as Error).message}`);
    }
    if (info.name !== c.name)
      throw new CairnError("invalid-argument", `checkpoint ${c.name}: its XML names ${info.name}`);
    const xmlUuid = /<uuid>\s*([^<\s]+)\s*<\/uuid>/.exec(c.xml)?.[1];
    if (xmlUuid && xmlUuid.toLowerCase() !== req.domainUuid.toLowerCase())
      throw new CairnError("invalid-argument", `checkpoint ${c.name} belongs to domain ${xmlUuid}`);
    return info;
  });
  const { hypervisor, log } = deps;
  const d = await hypervisor.domain(req.domainUuid, signal);
  if (!d) throw new CairnError("not-found", `no domain ${req.domainUuid} on this host`);
  if (d.state !== "running" && d.state !== "paused") {
    throw new CairnError("failed-precondition", `domain ${d.name} is ${d.state}, not running`, {
      hint: "checkpoints are redefined against the running QEMU's bitmaps: redefine once it runs here",
    });
  }
  const existing = new Set((await hypervisor.listCheckpoints(d.uuid, signal)).map((c) => c.name));
  const redefined: string[] = [];
  const alreadyPresent: string[] = [];
  const refused = new Map<string, string>();
  for (const c of parsed) {
    if (existing.has(c.name)) {
      alreadyPresent.push(c.name);
      continue;
    }
    try {
      await hypervisor.redefineCheckpoint(d.uuid, c.xml, { validate: true }, signal);
      redefined.push(c.name);
    } catch (err) {
      // libvirt's refusal is a verdict; a dead libvirtd or our own abort is not.
      if (!isCairnError(err, "failed-precondition") && !isCairnError(err, "not-found")) throw err;
      log.warn({ domain: d.name, checkpoint: c.name, err: err.message }, "libvirt refused a checkpoint");
      refused.set(c.name, err.message.replace(/^virsh .*? failed: /, ""));
    }
  }
  const live = await hypervisor.liveBitmaps(d.uuid, signal);
  const verdicts = judgeChain({ checkpoints: parsed, refused, live });
  return { redefined, alreadyPresent, verdicts, elapsedMs: performance.now() - started };
}
