import { createHash } from "node:crypto";
import { lstat, readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { abortError } from "../../../shared/src/errors/CairnError.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { encodeInlineBlob } from "../../../shared/src/repository/manifest/inlineBlob.js";
import type { ConfigFileKind, VmConfigFiles } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import { parseVmConfigRefs } from "./parseVmConfigRefs.js";

export interface VmConfigFilesConfig {
  /** libvirt's swtpm state root: a domain's TPM state is <swtpmStateDir>/<uuid>/. */
  swtpmStateDir: string;
  /** libvirt's nvram_dir, where it puts NVRAM files it names itself. */
  nvramDir: string;
  /** Files larger than this are recorded as missing, not read (default 256 MiB). */
  maxFileBytes?: number;
  /**
   * Files whose compressed, encoded form is longer than this are recorded as missing (default 1 MiB):
   * manifests stay far below gRPC's 4 MiB message limit (the coordinator ships them whole).
   */
  maxInlineChars?: number;
}

export const DEFAULT_SWTPM_STATE_DIR = "/var/lib/libvirt/swtpm";
export const DEFAULT_NVRAM_DIR = "/var/lib/libvirt/qemu/nvram";

type Entry = VmConfigFiles["files"][number];

/**
 * Reads the NVRAM and TPM state files the domain XML names (parseVmConfigRefs) from this host's
 * filesystem, for the snapshot manifest (format §7.1). The agent runs on the hypervisor host, so
 * libvirt's paths are its paths. Reading while QEMU/swtpm run is fine: both replace or rewrite
 * these files only when the guest changes a variable or the TPM's persistent state.
 * Never fails for a file: one that is absent, unreadable or too large is recorded as missing with
 * the reason (and logged); only an aborted signal or a domain XML that does not parse throw.
 */
export async function captureVmConfigFiles(
  domainXml: string,
  /** Absent: libvirt's default locations. */
  configured: VmConfigFilesConfig | undefined,
  opts: { signal: AbortSignal; log?: Logger },
): Promise<VmConfigFiles> {
  const config = configured ?? { swtpmStateDir: DEFAULT_SWTPM_STATE_DIR, nvramDir: DEFAULT_NVRAM_DIR };
  const refs = parseVmConfigRefs(domainXml, { nvramDir: config.nvramDir });
  const files: Entry[] = [];
  const read = (kind: ConfigFileKind, path: string, name: string) =>
    readOne(kind, path, name, config, opts.signal);

  if (refs.nvram?.kind === "file") {
    const e = await read("nvram", refs.nvram.path, `nvram/${basename(refs.nvram.path)}`);
    if (e.status === "missing" && refs.nvram.derived && /no such file/.test(e.reason)) {
      e.reason = `${e.reason} (the domain names no NVRAM file; this is where libvirt puts it at first start)`;
    }
    files.push(e);
  } else if (refs.nvram?.kind === "unsupported") {
    files.push({
      kind: "nvram",
      status: "missing",
      path: refs.nvram.what,
      name: "nvram",
      reason: refs.nvram.reason,
    });
  }

  for (const [i, tpm] of refs.tpms.entries()) {
    const prefix = refs.tpms.length > 1 ? `tpm/${i}` : "tpm";
    if (tpm.kind === "unsupported") {
      files.push({
        kind: "tpm",
        status: "missing",
        path: `(${tpm.backend} TPM)`,
        name: prefix,
        reason: `a ${tpm.backend} TPM keeps no state in the domain's definition`,
      });
      continue;
    }
    if (tpm.stateFile) {
      files.push(await read("tpm", tpm.stateFile, `${prefix}/${basename(tpm.stateFile)}`));
      continue;
    }
    const dir = tpm.stateDir ?? join(config.swtpmStateDir, refs.uuid);
    const found = await walk(dir, opts.signal);
    if ("reason" in found) {
      files.push({ kind: "tpm", status: "missing", path: dir, name: prefix, reason: found.reason });
      continue;
    }
    for (const rel of found.files) files.push(await read("tpm", join(dir, rel), `${prefix}/${rel}`));
  }

  for (const f of files) {
    if (f.status === "missing")
      opts.log?.warn(
        { domain: refs.name, kind: f.kind, path: f.path, reason: f.reason },
        "config file not backed up",
      );
  }
  return { version: 1, capturedAt: new Date().toISOString(), files };
}

async function readOne(
  kind: ConfigFileKind,
  path: string,
  name: string,
  config: VmConfigFilesConfig,
  signal: AbortSignal,
): Promise<Entry> {
  const missing = (reason: string): Entry => ({ kind, status: "missing", path, name, reason });
  if (signal.aborted) throw abortError(signal, `reading ${path}`);
  try {
    const st = await lstat(path);
    if (!st.isFile()) return missing("not a regular file");
    const max = config.maxFileBytes ?? 256 * 1024 * 1024;
    if (st.size > max)
      return missing(`${st.size} bytes: larger than the ${max}-byte limit for configuration files`);
    const data = await readFile(path, { signal });
    const encoded = encodeInlineBlob(data);
    const maxInline = config.maxInlineChars ?? 1024 * 1024;
    if (encoded.length > maxInline) {
      return missing(
        `compresses to ${encoded.length} characters: above the ${maxInline}-character inline limit`,
      );
    }
    return {
      kind,
      status: "stored",
      path,
      name,
      size: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      encoding: "zstd+base64",
      data: encoded,
    };
  } catch (e) {
    if (signal.aborted) throw abortError(signal, `reading ${path}`);
    return missing(describeFsError(e));
  }
}

/** Regular files below dir (relative, sorted); swtpm's `.lock` is not state. */
async function walk(dir: string, signal: AbortSignal): Promise<{ files: string[] } | { reason: string }> {
  const files: string[] = [];
  const visit = async (rel: string): Promise<void> => {
    if (signal.aborted) throw abortError(signal, `listing ${dir}`);
    const entries = await readdir(join(dir, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await visit(r);
      else if (e.isFile() && e.name !== ".lock") files.push(r);
    }
  };
  try {
    await visit("");
  } catch (e) {
    if (signal.aborted) throw abortError(signal, `listing ${dir}`);
    const reason = describeFsError(e);
    return {
      reason: /no such file/.test(reason)
        ? `${reason}: no swtpm state (created when the domain first starts with its TPM)`
        : reason,
    };
  }
  if (files.length === 0) return { reason: "the swtpm state directory holds no files" };
  return { files };
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return `permission denied (${code})`;
  if (code === "ENOTDIR") return "a path component is not a directory";
  return `cannot read: ${code ?? (e as Error).message}`;
}
