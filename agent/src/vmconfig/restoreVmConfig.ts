import { chmod, mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import {
  type ConfigFileKind,
  vmConfigFilesOf,
} from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { Repository } from "../../../shared/src/repository/Repository.js";
import { restoredFileMode } from "../restore/restoredFileMode.js";
import { decodeStoredConfigFile } from "./decodeStoredConfigFile.js";

export interface RestoredConfigFile {
  kind: ConfigFileKind;
  /** Where it was on the host at backup time. */
  path: string;
  /** Relative to the restore directory. */
  name: string;
  /** Written to; undefined when the snapshot records the file as missing. */
  out: string | undefined;
  size: number | undefined;
  sha256: string | undefined;
  mode: number | undefined;
  /** Why the snapshot has no content for it. */
  missing: string | undefined;
}

export interface RestoreVmConfigResult {
  snapshotId: string;
  /** `<out>/domain.xml`: the inactive domain XML (what `virsh define` takes). */
  domainXml: string;
  /** False for snapshots taken before NVRAM/TPM capture existed. */
  recorded: boolean;
  files: RestoredConfigFile[];
}

export const DOMAIN_XML_NAME = "domain.xml";

/**
 * Writes a snapshot's VM configuration to `outDir`: `domain.xml`, and the NVRAM and TPM state files
 * under the names the manifest gives them (`nvram/<file>`, `tpm/<path in the swtpm state dir>`),
 * with their recorded permission bits masked to at most 0600 (restoredFileMode). Every file is decoded and checked against its recorded size
 * and SHA-256 before anything is written: a mismatch is `corrupt` and writes nothing. An existing
 * non-empty `outDir` is refused unless `force`.
 */
export async function restoreVmConfig(
  repository: Repository,
  snapshotId: string,
  outDir: string,
  opts: { force?: boolean; signal?: AbortSignal } = {},
): Promise<RestoreVmConfigResult> {
  const manifest = await repository.showSnapshot(snapshotId, opts.signal);
  const record = vmConfigFilesOf(manifest);
  const root = resolve(outDir);
  const what = (name: string) =>
    `file ${name} of snapshot ${snapshotId} in repository ${repository.location}`;

  const planned: Array<{ entry: RestoredConfigFile; data: Buffer | undefined }> = [];
  for (const f of record?.files ?? []) {
    const out = resolve(root, f.name);
    if (!out.startsWith(root + sep) || out === resolve(root, DOMAIN_XML_NAME)) {
      throw new CairnError("corrupt", `${what(f.name)}: its name leaves the restore directory`);
    }
    if (f.status === "missing") {
      planned.push({
        entry: {
          kind: f.kind,
          path: f.path,
          name: f.name,
          out: undefined,
          size: undefined,
          sha256: undefined,
          mode: undefined,
          missing: f.reason,
        },
        data: undefined,
      });
      continue;
    }
    const data = decodeStoredConfigFile(f, what(f.name));
    const sha256 = f.sha256;
    planned.push({
      entry: {
        kind: f.kind,
        path: f.path,
        name: f.name,
        out,
        size: f.size,
        sha256,
        mode: f.mode,
        missing: undefined,
      },
      data,
    });
  }

  await mkdir(root, { recursive: true });
  if (!opts.force && (await readdir(root)).length > 0) {
    throw new CairnError("already-exists", `${root} is not empty`, {
      hint: "choose an empty --out directory, or pass --force to overwrite files in it",
    });
  }
  const flag = opts.force ? "w" : "wx";
  const domainXml = join(root, DOMAIN_XML_NAME);
  await writeFile(domainXml, manifest.domainXml, { flag, mode: 0o600 });
  for (const { entry, data } of planned) {
    if (!data || !entry.out) continue;
    await mkdir(dirname(entry.out), { recursive: true });
    await writeFile(entry.out, data, { flag, mode: 0o600 });
    await chmod(entry.out, restoredFileMode(entry.mode));
  }
  return { snapshotId, domainXml, recorded: record !== undefined, files: planned.map((p) => p.entry) };
}
