import { XMLParser } from "fast-xml-parser";
import type { DiskInfo } from "./DomainInfo.js";

/** Namespace for Cairn labels inside a domain's <metadata>. */
export const CAIRN_METADATA_NS = "https://cairn.dev/xmlns/libvirt/1";

export interface ParsedDomainXml {
  uuid: string;
  name: string;
  disks: DiskInfo[];
  labels: Record<string, string>;
  hasGuestAgentChannel: boolean;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (name) => ["disk", "channel", "label"].includes(name),
  removeNSPrefix: false,
});

type Node = Record<string, unknown>;
const asNodes = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v ? [v as Node] : []);
const attr = (n: Node | undefined, a: string): string => {
  const v = n?.[`@${a}`];
  return v === undefined ? "" : String(v);
};

/**
 * Reads what the agent needs from `virsh dumpxml`: identity, disks and Cairn labels.
 * Labels live in <metadata><cairn:labels xmlns:cairn="…"><cairn:label name="k">v</cairn:label>.
 */
export function parseDomainXml(xml: string): ParsedDomainXml {
  const doc = parser.parse(xml) as { domain?: Node };
  const d = doc.domain;
  if (!d) throw new Error("not a libvirt domain XML document (no <domain> element)");
  const devices = (d["devices"] ?? {}) as Node;
  const disks: DiskInfo[] = asNodes(devices["disk"]).map((disk) => {
    const src = disk["source"] as Node | undefined;
    return {
      target: attr(disk["target"] as Node, "dev"),
      format: attr(disk["driver"] as Node, "type"),
      source: attr(src, "file") || attr(src, "dev") || attr(src, "volume"),
      device: attr(disk, "device") || "disk",
    };
  });
  const hasGuestAgentChannel = asNodes(devices["channel"]).some(
    (c) => attr(c["target"] as Node, "name") === "org.qemu.guest_agent.0",
  );
  const labels: Record<string, string> = {};
  const meta = (d["metadata"] ?? {}) as Node;
  for (const [key, value] of Object.entries(meta)) {
    if (!key.endsWith("labels") || typeof value !== "object" || value === null) continue;
    const ns = Object.entries(value as Node).find(([k]) => k.startsWith("@xmlns"))?.[1];
    if (ns !== CAIRN_METADATA_NS) continue;
    for (const [lk, lv] of Object.entries(value as Node)) {
      if (!lk.endsWith("label")) continue;
      for (const l of asNodes(lv)) labels[attr(l, "name")] = String(l["#text"] ?? "");
    }
  }
  return {
    uuid: String(d["uuid"] ?? ""),
    name: String(d["name"] ?? ""),
    disks,
    labels,
    hasGuestAgentChannel,
  };
}
