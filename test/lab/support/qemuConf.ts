import { readFile, rename, writeFile } from "node:fs/promises";
import { agentConfigSchema } from "../../../agent/src/config/AgentConfig.js";

/** The agent's default transfer.libvirtTlsDir: the lab's first libvirtd must name the same one. */
export const DEFAULT_BACKUP_TLS_DIR: string = agentConfigSchema.parse({}).transfer.libvirtTlsDir;

/** qemu.conf settings a lab daemon needs for network exports (docs/transfer-paths.md §5). */
export function backupTlsSettings(dir: string): Record<string, string | number> {
  return { backup_tls_x509_cert_dir: dir, backup_tls_x509_verify: 1 };
}

/**
 * Sets scalar settings in a libvirt config text: replaces the first live entry of each name (libvirt
 * reads only the first), else appends one. Returns the text and whether anything changed.
 */
export function setLibvirtConf(
  text: string,
  settings: Record<string, string | number>,
): { text: string; changed: boolean } {
  const lines = text.split("\n");
  let changed = false;
  for (const [key, value] of Object.entries(settings)) {
    const want = `${key} = ${typeof value === "string" ? JSON.stringify(value) : String(value)}`;
    const i = lines.findIndex((l) => new RegExp(`^\\s*${key}\\s*=`).test(l));
    if (i >= 0) {
      if (lines[i]!.trim() === want) continue;
      lines[i] = want;
    } else {
      if (lines.length && lines.at(-1) === "") lines.pop();
      lines.push(want, "");
    }
    changed = true;
  }
  return { text: lines.join("\n"), changed };
}

/** Applies setLibvirtConf to a file (atomically); true when the file changed. */
export async function ensureLibvirtConf(
  path: string,
  settings: Record<string, string | number>,
): Promise<boolean> {
  const before = await readFile(path, "utf8");
  const { text, changed } = setLibvirtConf(before, settings);
  if (!changed) return false;
  await writeFile(`${path}.cairn-tmp`, text, { mode: 0o600 });
  await rename(`${path}.cairn-tmp`, path);
  return true;
}
