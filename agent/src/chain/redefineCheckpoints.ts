import { CairnError, isCairnError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import type { CheckpointInfo } from "../hypervisor/parseCheckpointXml.js";
import { parseCheckpointXml } from "../hypervisor/parseCheckpointXml.js";
import { checkChainIds } from "./checkChainIds.js";
import { checkpointXmlForDisks } from "./checkpointXmlForDisks.js";
import { type DiskChainVerdict, judgeChain } from "./judgeChain.js";
import { survivingDisks } from "./survivingDisks.js";

export interface RedefineOutcome {
  redefined: string[];
  alreadyPresent: string[];
  /** Of `redefined`: checkpoints libvirt took only without some of their disks (target → why). */
  partial: Map<string, Map<string, string>>;
  verdicts: DiskChainVerdict[];
  elapsedMs: number;
}

/**
 * After a migration (or a restart on another host): gives libvirt back the ledger's checkpoints,
 * oldest first, each validated against the running QEMU (`--redefine-validate`; never without:
 * an unvalidated checkpoint whose bitmap is gone would make the next incremental wrong), then
 * judges each (checkpoint, disk). One refusal does not stop the others.
 *
 * libvirt validates a checkpoint whole: one disk's lost bitmap makes it refuse them all. Then the
 * checkpoint is redefined again, still validated, tracking only the disks whose bitmaps QEMU has
 * sound, so only the others lose their chain. A later checkpoint is validated on its own disks,
 * whatever its parent kept.
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
  const existing = new Map((await hypervisor.listCheckpoints(d.uuid, signal)).map((c) => [c.name, c]));
  const redefined: string[] = [];
  const alreadyPresent: string[] = [];
  const refused = new Map<string, string>();
  const untracked = new Map<string, Map<string, string>>();
  const partial = new Map<string, Map<string, string>>();
  for (const c of parsed) {
    const present = existing.get(c.name);
    if (present) {
      alreadyPresent.push(c.name);
      // Defined here before, perhaps without some disks: libvirt's record is what counts.
      const missing = Object.keys(c.bitmaps).filter((t) => !(t in present.bitmaps));
      if (missing.length) untracked.set(c.name, new Map(missing.map((t) => [t, ""])));
      continue;
    }
    let whole: string;
    try {
      await hypervisor.redefineCheckpoint(d.uuid, c.xml, { validate: true }, signal);
      redefined.push(c.name);
      continue;
    } catch (err) {
      whole = refusal(err);
    }
    const subset = await redefineSubset(deps, d.uuid, d.name, c, whole, signal);
    if (subset.refused !== undefined) {
      log.warn({ domain: d.name, checkpoint: c.name, err: subset.refused }, "libvirt refused a checkpoint");
      refused.set(c.name, subset.refused);
    } else {
      redefined.push(c.name);
      partial.set(c.name, subset.dropped);
      untracked.set(c.name, subset.dropped);
    }
  }
  const live = await hypervisor.liveBitmaps(d.uuid, signal);
  const verdicts = judgeChain({ checkpoints: parsed, refused, untracked, live });
  return { redefined, alreadyPresent, partial, verdicts, elapsedMs: performance.now() - started };
}

/**
 * After libvirt refused a checkpoint whole: redefines it, validated, with only the disks whose
 * bitmaps the running QEMU has sound. `refused` (libvirt's words) when no disk survives, when
 * every disk looks sound (libvirt refused for another reason), or when libvirt refuses the subset.
 */
async function redefineSubset(
  deps: { hypervisor: Hypervisor; log: Logger },
  domainUuid: string,
  domainName: string,
  c: CheckpointInfo,
  whole: string,
  signal: AbortSignal,
): Promise<{ refused: string } | { refused?: undefined; dropped: Map<string, string> }> {
  const live = await deps.hypervisor.liveBitmaps(domainUuid, signal);
  const { kept, dropped } = survivingDisks(c.bitmaps, live);
  if (kept.length === 0 || dropped.size === 0) return { refused: whole };
  try {
    await deps.hypervisor.redefineCheckpoint(
      domainUuid,
      checkpointXmlForDisks(c.xml, kept),
      { validate: true },
      signal,
    );
  } catch (err) {
    const again = refusal(err);
    return { refused: `${whole}; and for ${kept.join(", ")} alone: ${again}` };
  }
  deps.log.warn(
    { domain: domainName, checkpoint: c.name, kept, dropped: Object.fromEntries(dropped) },
    "checkpoint redefined without the disks whose bitmaps did not survive",
  );
  return { dropped };
}

/** libvirt's words when it refused; rethrows anything else (a dead libvirtd, our own abort). */
function refusal(err: unknown): string {
  if (!isCairnError(err, "failed-precondition") && !isCairnError(err, "not-found")) throw err;
  return err.message.replace(/^virsh .*? failed: /, "");
}
