import type { RestoreOutcome } from "../../shared/src/gen/cairn/v1/common.js";
import { formatBytes } from "../../shared/src/units/formatBytes.js";

/** Whether a job kind is a restore (docs/restore.md §1). */
export function isRestoreJob(kind: string): boolean {
  return kind === "restore-disk" || kind === "restore-vm";
}

/** What a restore wrote, as rows of `cairn jobs show` and the lines `cairn restore` ends with. */
export function restoreRows(o: RestoreOutcome | undefined): [string, string][] {
  const x = o?.outcome;
  if (x?.$case === "disk") {
    const d = x.value;
    return [
      ["written to", `${d.destination} (${d.format}, ${d.targetKind})`],
      [
        "bytes",
        `${formatBytes(Number(d.bytesWritten))} written${d.bytesZeroed > 0n ? `, ${formatBytes(Number(d.bytesZeroed))} zeroed` : ""}`,
      ],
    ];
  }
  if (x?.$case === "vm") {
    const v = x.value;
    return [
      [
        "domain",
        `${v.domainName} (${v.domainUuid})${v.inPlace ? ", in place" : ""}${v.started ? ", started" : ""}`,
      ],
      ...v.disks.map((d): [string, string] => [
        `disk ${d.target}`,
        `${d.pool ? `pool ${d.pool} volume ${d.volume}${d.path ? ` (${d.path})` : ""}` : d.path} (${d.format}, ${formatBytes(Number(d.bytesWritten))} written)`,
      ]),
    ];
  }
  return [];
}
