import { CairnError } from "../../../shared/src/errors/CairnError.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// libvirt allows more, Cairn makes "cairn-<time>-<hex>": letters, digits, ".", "_", "-", no leading
// "-" (virsh would read it as an option), bounded.
const CHECKPOINT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Ids from the wire that become virsh arguments: a domain uuid and checkpoint names, checked
 * against strict patterns before anything reaches libvirt ("invalid-argument" names the field).
 */
export function checkChainIds(ids: { domainUuid: string; checkpoints?: readonly string[] }): void {
  if (!UUID.test(ids.domainUuid))
    throw new CairnError("invalid-argument", `domain_uuid ${JSON.stringify(ids.domainUuid)} is not a uuid`);
  for (const n of ids.checkpoints ?? []) {
    if (!CHECKPOINT.test(n))
      throw new CairnError("invalid-argument", `checkpoint name ${JSON.stringify(n)} is not allowed`, {
        hint: "checkpoint names are letters, digits, '.', '_' and '-', at most 128, not starting with '-'",
      });
  }
}
