const PARENT = /(\s*)<parent>\s*<name>[^<]*<\/name>\s*<\/parent>/;

/**
 * The checkpoint XML with its <parent> set to `parent` (or removed when null). Pure. Needed because
 * the XML is kept as libvirt gave it when the checkpoint was made, and pruning later deleted the
 * checkpoints in between (libvirt re-parented the survivors; a redefine must say the same). The
 * element goes where libvirt writes it: in place of the old one, else after the checkpoint's name.
 */
export function withParent(xml: string, parent: string | null): string {
  const element = (indent: string) =>
    `${indent}<parent>${indent}  <name>${escapeXml(parent ?? "")}</name>${indent}</parent>`;
  const old = PARENT.exec(xml);
  if (old) return xml.replace(PARENT, parent === null ? "" : element(old[1] || "\n  "));
  if (parent === null) return xml;
  const name = /<domaincheckpoint[^>]*>(\s*)<name>[^<]*<\/name>/.exec(xml);
  if (name) {
    const at = name.index + name[0].length;
    return `${xml.slice(0, at)}${element(name[1] || "\n  ")}${xml.slice(at)}`;
  }
  const open = /<domaincheckpoint[^>]*>/.exec(xml);
  if (!open) return xml;
  const at = open.index + open[0].length;
  return `${xml.slice(0, at)}${element("\n  ")}${xml.slice(at)}`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
