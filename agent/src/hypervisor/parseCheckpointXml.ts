import { XMLParser } from "fast-xml-parser";

export interface CheckpointInfo {
  name: string;
  parent: string | undefined;
  creationTime: number;
  /** target → bitmap name, for disks with checkpoint='bitmap'. */
  bitmaps: Record<string, string>;
  /** The document as libvirt gave it: what `checkpoint-create --redefine` needs after migration. */
  xml: string;
}

export interface BackupJobInfo {
  incremental: string | undefined;
  socket: string | undefined;
  disks: {
    target: string;
    exportName: string;
    exportBitmap: string | undefined;
    incremental: string | undefined;
  }[];
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (n) => n === "disk",
});
type Node = Record<string, unknown>;
const nodes = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v ? [v as Node] : []);
const str = (v: unknown): string | undefined =>
  v === undefined || v === null || v === "" ? undefined : String(v);

/** `virsh checkpoint-dumpxml` → the facts the checkpoint ledger needs. */
export function parseCheckpointXml(xml: string): CheckpointInfo {
  const c = (parser.parse(xml) as { domaincheckpoint?: Node }).domaincheckpoint;
  if (!c) throw new Error("not a libvirt checkpoint XML document (no <domaincheckpoint>)");
  const bitmaps: Record<string, string> = {};
  for (const d of nodes((c["disks"] as Node | undefined)?.["disk"])) {
    if (d["@checkpoint"] === "bitmap") bitmaps[String(d["@name"])] = String(d["@bitmap"] ?? c["name"]);
  }
  const parent = c["parent"] as Node | undefined;
  return {
    name: String(c["name"] ?? ""),
    parent: str(parent?.["name"]),
    creationTime: Number(c["creationTime"] ?? 0),
    bitmaps,
    xml,
  };
}

/** `virsh backup-dumpxml` of a running pull backup → export names and dirty-bitmap names per disk. */
export function parseBackupJobXml(xml: string): BackupJobInfo {
  const b = (parser.parse(xml) as { domainbackup?: Node }).domainbackup;
  if (!b) throw new Error("not a libvirt backup XML document (no <domainbackup>)");
  const server = b["server"] as Node | undefined;
  return {
    incremental: str(b["incremental"]),
    socket: str(server?.["@socket"]),
    disks: nodes((b["disks"] as Node | undefined)?.["disk"])
      .filter((d) => d["@backup"] !== "no")
      .map((d) => ({
        target: String(d["@name"]),
        exportName: String(d["@exportname"] ?? d["@name"]),
        exportBitmap: str(d["@exportbitmap"]),
        incremental: str(d["@incremental"]) ?? str(b["incremental"]),
      })),
  };
}
