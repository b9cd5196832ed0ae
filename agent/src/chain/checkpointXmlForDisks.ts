import { parseCheckpointXml } from "../hypervisor/parseCheckpointXml.js";

// Tags (attribute values may hold '>'), and what must be skipped whole: comments, CDATA, PIs.
const TOKEN =
  /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<[?!][\s\S]*?>|<(\/?)([A-Za-z_][\w:.-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g;
const ATTR = /([\w:.-]+)\s*=\s*("[^"]*"|'[^']*')/g;

/**
 * A checkpoint's XML tracking only `keep` among its bitmap disks: every other disk becomes
 * checkpoint='no' without its bitmap attribute, so a validated redefinition checks (and libvirt
 * then records) only those. Touches only the checkpoint's own <disks>, never the embedded
 * <domain>'s; the rest of the document stays byte for byte. Pure; throws when `keep` names a disk
 * the checkpoint has no bitmap for.
 */
export function checkpointXmlForDisks(xml: string, keep: readonly string[]): string {
  const before = parseCheckpointXml(xml);
  const wanted = new Set(keep);
  for (const t of wanted)
    if (!(t in before.bitmaps)) throw new Error(`checkpoint ${before.name} has no bitmap for ${t}`);
  let depth = 0;
  let inDisks = false;
  const out = xml.replace(TOKEN, (tok, close: string, name: string, attrs: string, selfClose: string) => {
    if (name === undefined) return tok;
    if (close) {
      depth--;
      if (depth === 1 && name === "disks") inDisks = false;
      return tok;
    }
    // <domaincheckpoint> is depth 0: its own <disks> sits at depth 1, their <disk> at 2.
    if (depth === 1 && name === "disks" && !selfClose) inDisks = true;
    const rewritten =
      inDisks && depth === 2 && name === "disk" ? untracked(attrs, wanted, selfClose) : undefined;
    if (!selfClose) depth++;
    return rewritten ?? tok;
  });
  const after = parseCheckpointXml(out);
  const got = Object.keys(after.bitmaps).sort();
  if (after.name !== before.name || got.join() !== [...wanted].sort().join())
    throw new Error(`checkpoint ${before.name}: could not limit its disks to ${[...wanted].join(", ")}`);
  return out;
}

/** The <disk> tag with checkpoint='no' and no bitmap, or undefined to leave it as it is. */
function untracked(attrs: string, keep: ReadonlySet<string>, selfClose: string): string | undefined {
  const a = new Map([...attrs.matchAll(ATTR)].map((m) => [m[1]!, m[2]!.slice(1, -1)]));
  if (a.get("checkpoint") !== "bitmap" || keep.has(a.get("name") ?? "")) return undefined;
  const kept = [...attrs.matchAll(ATTR)]
    .filter((m) => m[1] !== "bitmap")
    .map((m) => (m[1] === "checkpoint" ? `checkpoint='no'` : m[0]));
  return `<disk ${kept.join(" ")}${selfClose ? "/" : ""}>`;
}
