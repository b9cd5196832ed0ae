import type { Hypervisor } from "../hypervisor/Hypervisor.js";
import { checkChainIds } from "./checkChainIds.js";

/**
 * On a host that keeps a stale, inactive definition of a VM that runs elsewhere: removes checkpoint
 * metadata only (`checkpoint-delete --metadata`), never bitmaps (the images may be the very ones
 * the running VM uses). Refuses, removing nothing, when the domain runs here or is absent.
 * `names` empty: every checkpoint named "cairn-…".
 */
export async function forgetCheckpoints(
  hypervisor: Hypervisor,
  req: { domainUuid: string; names: readonly string[] },
  signal: AbortSignal,
): Promise<{ removed: string[]; refused: string }> {
  checkChainIds({ domainUuid: req.domainUuid, checkpoints: req.names });
  const d = await hypervisor.domain(req.domainUuid, signal);
  if (!d) return { removed: [], refused: `no domain ${req.domainUuid} on this host` };
  if (d.state !== "shutoff")
    return {
      removed: [],
      refused: `domain ${d.name} is ${d.state} on this host: its checkpoints are not stale here`,
    };
  const wanted = new Set(req.names);
  const targets = (await hypervisor.listCheckpoints(d.uuid, signal))
    .map((c) => c.name)
    .filter((n) => (wanted.size ? wanted.has(n) : n.startsWith("cairn-")))
    .reverse(); // children first: no reparenting on the way
  const removed: string[] = [];
  for (const n of targets) {
    await hypervisor.deleteCheckpoint(d.uuid, n, { metadataOnly: true }, signal);
    removed.push(n);
  }
  return { removed, refused: "" };
}
