import { XMLParser } from "fast-xml-parser";
import { CairnError } from "../../../shared/src/errors/CairnError.js";

/** The UEFI variable store of a domain, as its XML names it. */
export type NvramRef =
  /** A local file (or block device) the agent can read. */
  | { kind: "file"; path: string; derived: boolean }
  /** Something the agent cannot read as a local file (e.g. an iSCSI volume). */
  | { kind: "unsupported"; what: string; reason: string };

/** One <tpm> device. */
export type TpmRef =
  /** swtpm run by libvirt: its state is a directory (or, when the XML says so, one file) on this host. */
  | { kind: "emulator"; version: string; stateDir?: string; stateFile?: string; encrypted: boolean }
  /** passthrough / external: no state that belongs to the domain's definition. */
  | { kind: "unsupported"; backend: string };

export interface VmConfigRefs {
  name: string;
  uuid: string;
  nvram: NvramRef | undefined;
  tpms: TpmRef[];
}

export interface VmConfigRefsOptions {
  /** Where libvirt puts NVRAM files it names itself (qemu.conf nvram_dir). */
  nvramDir: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (name) => name === "tpm",
  removeNSPrefix: false,
});

type Node = Record<string, unknown>;
const asNodes = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : v ? [v as Node] : []);
const attr = (n: unknown, a: string): string => {
  const v = typeof n === "object" && n !== null ? (n as Node)[`@${a}`] : undefined;
  return v === undefined ? "" : String(v);
};
const text = (n: unknown): string =>
  typeof n === "object" && n !== null ? String((n as Node)["#text"] ?? "").trim() : String(n ?? "").trim();

/**
 * The files of a domain's configuration besides its XML: the NVRAM (`<os><nvram>`, either
 * `<nvram>PATH</nvram>` or libvirt ≥ 8.5's `<nvram type='file'><source file='PATH'/>`; for
 * `<os firmware='efi'>` without one, the `<nvramDir>/<name>_VARS.fd` libvirt creates) and every
 * `<devices><tpm>` with its backend.
 */
export function parseVmConfigRefs(xml: string, options: VmConfigRefsOptions): VmConfigRefs {
  const doc = parser.parse(xml) as { domain?: Node };
  const d = doc.domain;
  if (d === undefined || typeof d !== "object") {
    throw new CairnError("invalid-argument", "not a libvirt domain XML document (no <domain> element)");
  }
  const name = String(d["name"] ?? "");
  const uuid = String(d["uuid"] ?? "");
  const os = (d["os"] ?? {}) as Node;
  return { name, uuid, nvram: nvramOf(os, name, options), tpms: tpmsOf((d["devices"] ?? {}) as Node) };
}

function nvramOf(os: Node, name: string, options: VmConfigRefsOptions): NvramRef | undefined {
  const n = os["nvram"];
  if (n === undefined || n === "") {
    if (attr(os, "firmware") === "efi" && name) {
      return { kind: "file", path: `${options.nvramDir}/${name}_VARS.fd`, derived: true };
    }
    return undefined;
  }
  const type = attr(n, "type");
  const src = typeof n === "object" && n !== null ? (n as Node)["source"] : undefined;
  if (type === "" || type === "file" || type === "block") {
    const path = text(n) || attr(src, "file") || attr(src, "dev");
    return path ? { kind: "file", path, derived: false } : undefined;
  }
  const what = [attr(src, "protocol"), attr(src, "name")].filter(Boolean).join(":") || type;
  return { kind: "unsupported", what, reason: `NVRAM of type ${type} is not a local file` };
}

function tpmsOf(devices: Node): TpmRef[] {
  return asNodes(devices["tpm"]).map((tpm): TpmRef => {
    const backend = tpm["backend"] as Node | undefined;
    const type = attr(backend, "type");
    if (type !== "emulator") return { kind: "unsupported", backend: type || "(none)" };
    const src = backend?.["source"];
    const srcType = attr(src, "type");
    return {
      kind: "emulator",
      version: attr(backend, "version") || "2.0",
      ...(srcType === "dir" && attr(src, "path") ? { stateDir: attr(src, "path") } : {}),
      ...(srcType === "file" && attr(src, "path") ? { stateFile: attr(src, "path") } : {}),
      encrypted: backend?.["encryption"] !== undefined,
    };
  });
}
