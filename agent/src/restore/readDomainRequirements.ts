import { XMLParser } from "fast-xml-parser";
import { CairnError } from "../../../shared/src/errors/CairnError.js";

/** What a domain needs of the host it is defined on, from its XML. */
export interface DomainRequirements {
  /** `<os><type arch>` ("x86_64"); "" when unsaid. */
  arch: string;
  /** `<os><type machine>` ("pc-q35-7.2", "q35"); "" when unsaid. */
  machine: string;
  /** `<os><loader>`: a firmware file the domain names. */
  loader: string | undefined;
  /** `<os firmware=…>`: firmware libvirt selects ("efi", "bios"). */
  firmware: string | undefined;
  /** `<devices><emulator>`. */
  emulator: string | undefined;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@" });
type Node = Record<string, unknown>;
const textOf = (n: unknown): string =>
  (typeof n === "object" && n !== null ? String((n as Node)["#text"] ?? "") : String(n ?? "")).trim();
const attr = (n: unknown, a: string): string =>
  typeof n === "object" && n !== null ? String((n as Node)[`@${a}`] ?? "") : "";

/** Reads a domain's host requirements (pure); a document without <domain> is `corrupt`. */
export function readDomainRequirements(xml: string): DomainRequirements {
  const d = (parser.parse(xml) as { domain?: Node }).domain;
  if (!d || typeof d !== "object") throw new CairnError("corrupt", "the domain XML has no <domain> element");
  const os = (d["os"] ?? {}) as Node;
  const type = os["type"];
  const loader = textOf(os["loader"]);
  const emulator = textOf((d["devices"] as Node | undefined)?.["emulator"]);
  return {
    arch: attr(type, "arch"),
    machine: attr(type, "machine"),
    loader: loader || undefined,
    firmware: attr(os, "firmware") || undefined,
    emulator: emulator || undefined,
  };
}
