import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import type { DomainInfo } from "../../../hypervisor/DomainInfo.js";

/**
 * The disks a job backs up: the requested targets (each must be a disk with a source, live or
 * shut off alike), or every such disk. "invalid-argument" names the unknown ones.
 */
export function selectDisks(domain: DomainInfo, wanted: readonly string[] | undefined): DomainInfo["disks"] {
  const candidates = domain.disks.filter((d) => d.device === "disk" && d.source);
  if (!wanted?.length) return candidates;
  const missing = wanted.filter((t) => !candidates.some((d) => d.target === t));
  if (missing.length) {
    throw new CairnError(
      "invalid-argument",
      `domain ${domain.name} has no backup-capable disk ${missing.join(", ")}`,
      {
        hint: `its disks are ${candidates.map((d) => d.target).join(", ") || "(none)"}`,
      },
    );
  }
  return candidates.filter((d) => wanted.includes(d.target));
}
