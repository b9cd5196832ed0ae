import { isAbsolute } from "node:path";
import { XMLBuilder, XMLParser } from "fast-xml-parser";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { checkRestoreIds } from "./checkRestoreIds.js";

/** Where one restored disk is, as the new definition names it. */
export interface RewrittenDisk {
  /** A file (type='file', <source file>) or a block device such as a logical volume (type='block'). */
  type: "file" | "block";
  path: string;
  format: "raw" | "qcow2";
}

export interface DomainRewrite {
  name: string;
  uuid: string;
  /** By target: the disks the snapshot holds. Every other disk is emptied (cdrom, floppy) or dropped. */
  disks: ReadonlyMap<string, RewrittenDisk>;
  /** The new domain's NVRAM file; undefined when the domain has none. */
  nvramPath?: string | undefined;
}

export interface RewrittenDomain {
  xml: string;
  /** Disks of the definition that are not in the snapshot and were removed (their targets). */
  dropped: string[];
  /** Removable drives (cdrom, floppy) kept without media. */
  emptied: string[];
}

// preserveOrder keeps element order, comments and namespaced metadata as they were.
const OPTIONS = {
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  preserveOrder: true,
  commentPropName: "#comment",
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
} as const;

type Node = Record<string, unknown>;
const ATTRS = ":@";

const tagOf = (n: Node): string | undefined => Object.keys(n).find((k) => k !== ATTRS);
const kids = (n: Node): Node[] => {
  const t = tagOf(n);
  return t && Array.isArray(n[t]) ? (n[t] as Node[]) : [];
};
const setKids = (n: Node, list: Node[]): void => {
  const t = tagOf(n);
  if (t) n[t] = list;
};
const attrsOf = (n: Node): Record<string, string> => {
  let a = n[ATTRS] as Record<string, string> | undefined;
  if (!a) {
    a = {};
    n[ATTRS] = a;
  }
  return a;
};
const child = (n: Node, tag: string): Node | undefined => kids(n).find((c) => tagOf(c) === tag);
const el = (tag: string, attrs: Record<string, string> = {}, children: Node[] = []): Node => {
  const n: Node = { [tag]: children };
  if (Object.keys(attrs).length)
    n[ATTRS] = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`@${k}`, v]));
  return n;
};
const text = (value: string): Node => ({ "#text": value });
const setText = (n: Node, value: string): void => setKids(n, [text(value)]);

function checkPath(path: string, what: string): void {
  if (!isAbsolute(path) || /[\0\n\r]/.test(path))
    throw new CairnError("invalid-argument", `${what} ${JSON.stringify(path)} is not an absolute path`);
}

/**
 * The definition of a restored domain, from the snapshot's inactive domain XML (docs/restore.md
 * §3). Pure. Changes only what must differ from the original so the two never share anything:
 * - the name and the uuid;
 * - every interface's <mac> is removed (libvirt generates a new one when the domain is defined),
 *   and so is an interface's <target dev>, which names a host device of the original;
 * - each disk the snapshot holds points at its restored file or device, in its new format, without
 *   the original's <source> details or <backingStore> (a restored disk is flat);
 * - a cdrom or floppy not in the snapshot stays as an empty drive (device order and boot order keep);
 *   any other disk not in the snapshot is dropped (pointing at the original's disk would have two
 *   domains write one disk);
 * - a serial, console, channel or parallel device loses its <log file> (the original's);
 * - the NVRAM names the new domain's own variable store; a TPM emulator's explicit state location
 *   is removed, so libvirt uses <swtpm state dir>/<new uuid>/, where the restore puts it.
 * Everything else (devices, CPU, memory, metadata, Cairn labels) is kept as it was.
 */
export function rewriteDomainXml(xml: string, r: DomainRewrite): RewrittenDomain {
  checkRestoreIds({ domainName: r.name });
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(r.uuid))
    throw new CairnError("invalid-argument", `uuid ${JSON.stringify(r.uuid)} is not a uuid`);
  for (const d of r.disks.values()) checkPath(d.path, "disk path");
  if (r.nvramPath !== undefined) checkPath(r.nvramPath, "NVRAM path");

  const doc = new XMLParser(OPTIONS).parse(xml) as Node[];
  const domain = doc.find((n) => tagOf(n) === "domain");
  if (!domain) throw new CairnError("corrupt", "the snapshot's domain XML has no <domain> element");
  const top = kids(domain);

  const setOrAdd = (tag: string, value: string, after: string) => {
    const existing = child(domain, tag);
    if (existing) return setText(existing, value);
    const at = top.findIndex((c) => tagOf(c) === after);
    top.splice(at + 1, 0, el(tag, {}, [text(value)]));
  };
  setOrAdd("name", r.name, "");
  setOrAdd("uuid", r.uuid, "name");

  const os = child(domain, "os");
  if (os && r.nvramPath !== undefined) {
    const nvram = child(os, "nvram");
    if (!nvram) kids(os).push(el("nvram", {}, [text(r.nvramPath)]));
    else {
      const src = child(nvram, "source");
      if (src) {
        const a = attrsOf(src);
        for (const k of Object.keys(a)) delete a[k];
        a["@file"] = r.nvramPath;
        attrsOf(nvram)["@type"] = "file";
      } else setText(nvram, r.nvramPath);
    }
  }

  const dropped: string[] = [];
  const emptied: string[] = [];
  const devices = child(domain, "devices");
  if (devices) {
    const kept: Node[] = [];
    for (const dev of kids(devices)) {
      const tag = tagOf(dev);
      if (tag === "disk") {
        const target = String(attrsOf(child(dev, "target") ?? {})["@dev"] ?? "");
        const restored = r.disks.get(target);
        const device = attrsOf(dev)["@device"] ?? "disk";
        if (restored) rewriteDisk(dev, restored);
        else if (device === "cdrom" || device === "floppy") {
          setKids(
            dev,
            kids(dev).filter((c) => !["source", "backingStore"].includes(tagOf(c) ?? "")),
          );
          attrsOf(dev)["@type"] = "file";
          emptied.push(target);
        } else {
          dropped.push(target);
          continue;
        }
      } else if (tag === "interface") {
        setKids(
          dev,
          kids(dev).filter((c) => tagOf(c) !== "mac" && tagOf(c) !== "target"),
        );
      } else if (tag === "serial" || tag === "console" || tag === "channel" || tag === "parallel") {
        // Its <log file> is the original's: two domains would write one log.
        setKids(
          dev,
          kids(dev).filter((c) => tagOf(c) !== "log"),
        );
      } else if (tag === "tpm") {
        const backend = child(dev, "backend");
        if (backend && attrsOf(backend)["@type"] === "emulator")
          setKids(
            backend,
            kids(backend).filter((c) => tagOf(c) !== "source"),
          );
      }
      kept.push(dev);
    }
    setKids(devices, dropKeptWhitespace(kept));
  }
  return {
    xml: new XMLBuilder({ ...OPTIONS, suppressEmptyNode: true }).build(doc) as string,
    dropped,
    emptied,
  };
}

function rewriteDisk(disk: Node, d: RewrittenDisk): void {
  attrsOf(disk)["@type"] = d.type;
  const list = kids(disk).filter((c) => !["source", "backingStore"].includes(tagOf(c) ?? ""));
  let driver = list.find((c) => tagOf(c) === "driver");
  if (!driver) {
    driver = el("driver", { name: "qemu" });
    list.unshift(driver);
  }
  attrsOf(driver)["@type"] = d.format;
  const at = list.indexOf(driver) + 1;
  list.splice(at, 0, el("source", d.type === "file" ? { file: d.path } : { dev: d.path }));
  setKids(disk, list);
}

/** Two whitespace nodes in a row (left where a dropped disk was) become one. */
function dropKeptWhitespace(list: Node[]): Node[] {
  return list.filter((n, i) => !(tagOf(n) === "#text" && i > 0 && tagOf(list[i - 1] as Node) === "#text"));
}
