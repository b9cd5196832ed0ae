import { dirname, join } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type { SnapshotManifest } from "../../../shared/src/repository/manifest/SnapshotManifest.js";
import {
  type StoredConfigFile,
  vmConfigFilesOf,
} from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import { parseDomainXml } from "../hypervisor/parseDomainXml.js";
import { parseVmConfigRefs } from "../vmconfig/parseVmConfigRefs.js";
import { checkRestoreIds } from "./checkRestoreIds.js";
import type { PoolInfo, RestoreHost } from "./RestoreHost.js";
import { readDomainRequirements } from "./readDomainRequirements.js";
import { rewriteDomainXml } from "./rewriteDomainXml.js";

export interface VmRestoreRequest {
  /** Empty: "<original name>-restored". */
  newName: string;
  /** Empty (and no pool): the directory of the original's first disk. */
  destinationDir: string;
  /** "", "qcow2" or "raw" ("": qcow2, raw on a logical pool, the current format in place). */
  format: string;
  pool: string;
  inPlace: boolean;
}

/** One disk of the snapshot, with what its restore writes. */
export interface SnapshotDisk {
  target: string;
  virtualSize: number;
  /** Bytes of the restore point that hold data (the rest are zero runs the restore leaves as holes). */
  dataBytes: number;
}

export interface PlannedDisk {
  target: string;
  virtualSize: number;
  format: "raw" | "qcow2";
  /** Where it is written (for a pool volume: the path libvirt will give it). */
  path: string;
  /** In the definition: a file, or a block device (a logical volume). */
  type: "file" | "block";
  /** Created in a pool before it is written. */
  volume?: { pool: string; name: string } | undefined;
  /** In place: the disk's current file or device is written over. */
  overwrite: boolean;
}

export interface VmRestorePlan {
  name: string;
  uuid: string;
  inPlace: boolean;
  disks: PlannedDisk[];
  /** The definition to define (a new domain); undefined in place (the definition is kept). */
  xml: string | undefined;
  /** Where the domain's NVRAM goes, and the snapshot's copy (undefined: the snapshot has none). */
  nvram: { path: string; file: StoredConfigFile | undefined } | undefined;
  /** The swtpm state directory and the snapshot's files for it, paths relative to it. */
  tpm: { dir: string; files: Array<{ rel: string; file: StoredConfigFile }> } | undefined;
  /** Definition disks not in the snapshot: removed, or (cdrom, floppy) left empty. */
  dropped: string[];
  emptied: string[];
}

export interface VmRestorePlanInput {
  manifest: SnapshotManifest;
  request: VmRestoreRequest;
  disks: SnapshotDisk[];
  /** libvirt's nvram_dir and swtpm state root on this host. */
  nvramDir: string;
  swtpmStateDir: string;
  /** The new domain's uuid (chosen by the caller: the plan is then complete before anything is written). */
  newUuid: string;
}

/** qcow2 metadata for a disk: an 8-byte L2 entry per 64 KiB cluster, refcounts, headers (generous). */
const qcow2Overhead = (size: number) => Math.ceil(size / 4096) + 4 * 1024 * 1024;

/**
 * Decides everything a VM restore does (docs/restore.md §3) and refuses, before anything is
 * written, what cannot work: a name that exists, storage without room, a pool that is missing or
 * of a kind not supported, a machine type, firmware or emulator the host lacks, an original that
 * is absent or running (in place). Asks the host only for facts.
 */
export async function planVmRestore(
  input: VmRestorePlanInput,
  host: RestoreHost,
  signal: AbortSignal,
): Promise<VmRestorePlan> {
  const { request } = input;
  if (!["", "raw", "qcow2"].includes(request.format))
    throw new CairnError("invalid-argument", `format ${JSON.stringify(request.format)} is not raw or qcow2`);
  if (request.inPlace) return planInPlace(input, host, signal);
  if (request.pool && request.destinationDir)
    throw new CairnError("invalid-argument", "destination_dir and pool are exclusive", {
      hint: "restore the disks to a directory or to a storage pool, not both",
    });
  const { manifest } = input;
  const name = request.newName || `${manifest.vm.name}-restored`;
  try {
    checkRestoreIds({ domainName: name });
  } catch (e) {
    if (request.newName) throw e;
    throw new CairnError(
      "invalid-argument",
      `the default name ${JSON.stringify(name)} is not allowed for a restore`,
      { hint: "name the new domain (--name) with letters, digits, '.', '_', '+' and '-'", cause: e },
    );
  }
  if (await host.domain(name, signal))
    throw new CairnError("already-exists", `a domain named ${name} exists on this host`, {
      hint: "choose another name for the restored domain (--name), or restore in place over the original",
    });

  const requirements = readDomainRequirements(manifest.domainXml);
  const disks = await (request.pool
    ? poolDisks(input, name, request.pool, host, signal)
    : dirDisks(input, name, host, signal));
  await checkHostOffers(requirements, host, signal);

  const refs = parseVmConfigRefs(manifest.domainXml, { nvramDir: input.nvramDir });
  const stored = storedConfigFiles(manifest);
  let nvram: VmRestorePlan["nvram"];
  if (refs.nvram?.kind === "unsupported")
    throw new CairnError(
      "failed-precondition",
      `the domain's NVRAM is not a local file (${refs.nvram.what})`,
      {
        hint: "a restore writes NVRAM only to a file; restore the disks alone (restore disk)",
      },
    );
  if (refs.nvram) {
    const path = join(input.nvramDir, `${name}_VARS.fd`);
    if (await host.exists(path, signal))
      throw new CairnError("already-exists", `NVRAM file ${path} exists`, {
        hint: "a domain of that name had one; remove it or choose another name",
      });
    nvram = { path, file: stored.find((f) => f.kind === "nvram") };
  }
  const tpm = tpmPlan(refs.tpms, stored, join(input.swtpmStateDir, input.newUuid));
  const rewritten = rewriteDomainXml(manifest.domainXml, {
    name,
    uuid: input.newUuid,
    disks: new Map(disks.map((d) => [d.target, { type: d.type, path: d.path, format: d.format }])),
    nvramPath: nvram?.path,
  });
  return {
    name,
    uuid: input.newUuid,
    inPlace: false,
    disks,
    xml: rewritten.xml,
    nvram,
    tpm,
    dropped: rewritten.dropped,
    emptied: rewritten.emptied,
  };
}

async function dirDisks(
  input: VmRestorePlanInput,
  name: string,
  host: RestoreHost,
  signal: AbortSignal,
): Promise<PlannedDisk[]> {
  const format = (input.request.format || "qcow2") as "raw" | "qcow2";
  let dir = input.request.destinationDir;
  if (!dir) {
    const inSnapshot = new Set(input.disks.map((d) => d.target));
    const first = parseDomainXml(input.manifest.domainXml).disks.find(
      (d) => inSnapshot.has(d.target) && d.source.startsWith("/") && !d.source.startsWith("/dev/"),
    );
    if (!first)
      throw new CairnError(
        "invalid-argument",
        "the original's disks are not files: name a destination_dir or a pool",
      );
    dir = dirname(first.source);
  }
  if (!dir.startsWith("/") || dir.includes("\0"))
    throw new CairnError(
      "invalid-argument",
      `destination_dir ${JSON.stringify(dir)} is not an absolute path`,
    );
  if (!(await host.exists(dir, signal)))
    throw new CairnError("not-found", `destination directory ${dir} does not exist on this host`);
  const disks: PlannedDisk[] = [];
  for (const d of input.disks) {
    const path = join(dir, `${name}-${d.target}.${format}`);
    if (await host.exists(path, signal))
      throw new CairnError("already-exists", `${path} exists`, {
        hint: "a restore never writes over a file it did not create; choose another name or directory",
      });
    disks.push({
      target: d.target,
      virtualSize: d.virtualSize,
      format,
      path,
      type: "file",
      overwrite: false,
    });
  }
  await checkRoom(`directory ${dir}`, await host.freeBytes(dir, signal), needed(input.disks, format));
  return disks;
}

async function poolDisks(
  input: VmRestorePlanInput,
  name: string,
  poolName: string,
  host: RestoreHost,
  signal: AbortSignal,
): Promise<PlannedDisk[]> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(poolName))
    throw new CairnError("invalid-argument", `pool ${JSON.stringify(poolName)} is not a pool name`);
  const pool: PoolInfo | undefined = await host.pool(poolName, signal);
  if (!pool)
    throw new CairnError("not-found", `storage pool ${poolName} does not exist on this host`, {
      hint: "virsh pool-list --all shows the pools",
    });
  if (!pool.active)
    throw new CairnError("failed-precondition", `storage pool ${poolName} is not active`, {
      hint: `start it first (virsh pool-start ${poolName})`,
    });
  let format: "raw" | "qcow2";
  if (pool.type === "dir") format = (input.request.format || "qcow2") as "raw" | "qcow2";
  else if (pool.type === "logical") {
    if (input.request.format === "qcow2")
      throw new CairnError(
        "invalid-argument",
        `pool ${poolName} is a logical (LVM) pool: its volumes hold raw disks`,
        {
          hint: "pass --format raw, or restore to a dir pool for qcow2",
        },
      );
    format = "raw";
  } else
    throw new CairnError(
      "failed-precondition",
      `storage pool ${poolName} is of type ${pool.type}; a restore writes to dir and logical pools`,
      {
        hint: "restore to a dir or logical pool, or to a directory (--storage)",
      },
    );
  const block = pool.type === "logical";
  const disks: PlannedDisk[] = [];
  for (const d of input.disks) {
    const volume = block ? `${name}-${d.target}` : `${name}-${d.target}.${format}`;
    const path = join(pool.path, volume);
    if (await host.exists(path, signal))
      throw new CairnError("already-exists", `volume ${volume} exists in pool ${poolName}`, {
        hint: "choose another name for the restored domain",
      });
    disks.push({
      target: d.target,
      virtualSize: d.virtualSize,
      format,
      path,
      type: block ? "block" : "file",
      volume: { pool: poolName, name: volume },
      overwrite: true,
    });
  }
  // A logical volume is allocated whole; a file in a dir pool as the format allows.
  await checkRoom(
    `pool ${poolName}`,
    pool.availableBytes,
    block ? needed(input.disks, "raw") : needed(input.disks, format),
  );
  return disks;
}

async function planInPlace(
  input: VmRestorePlanInput,
  host: RestoreHost,
  signal: AbortSignal,
): Promise<VmRestorePlan> {
  const { manifest, request } = input;
  if (request.newName || request.destinationDir || request.pool)
    throw new CairnError(
      "invalid-argument",
      "an in-place restore takes no new_name, destination_dir or pool",
      {
        hint: "in place, the original's name, disks and definition are kept",
      },
    );
  const uuid = manifest.vm.uuid;
  const original = await host.domain(uuid, signal);
  if (!original)
    throw new CairnError(
      "not-found",
      `domain ${manifest.vm.name} (uuid ${uuid}) is not defined on this host`,
      {
        hint: "restore it under a new name instead, or on the host that has it",
      },
    );
  if (original.state !== "shutoff")
    throw new CairnError(
      "failed-precondition",
      `domain ${original.name} is ${original.state}; an in-place restore needs it shut off`,
      {
        hint: `shut it off first (virsh shutdown ${original.name})`,
      },
    );
  const current = await host.inactiveXml(uuid, signal);
  const defined = new Map(parseDomainXml(current).disks.map((d) => [d.target, d]));
  const disks: PlannedDisk[] = [];
  const byDir = new Map<string, number>();
  for (const d of input.disks) {
    const now = defined.get(d.target);
    if (!now?.source.startsWith("/"))
      throw new CairnError(
        "failed-precondition",
        `domain ${original.name} has no local disk ${d.target} now`,
        {
          hint: "an in-place restore writes each disk where the current definition has it",
        },
      );
    const format = now.format || "raw";
    if (format !== "raw" && format !== "qcow2")
      throw new CairnError(
        "failed-precondition",
        `disk ${d.target} of ${original.name} is ${format}; a restore writes raw or qcow2`,
      );
    if (request.format && request.format !== format)
      throw new CairnError(
        "invalid-argument",
        `disk ${d.target} is ${format} in the definition; in place it stays ${format}`,
        {
          hint: "leave --format out for an in-place restore",
        },
      );
    const block = now.source.startsWith("/dev/");
    disks.push({
      target: d.target,
      virtualSize: d.virtualSize,
      format,
      path: now.source,
      type: block ? "block" : "file",
      overwrite: true,
    });
    // A file is replaced by a complete new one beside it (docs/restore.md §2): room for both.
    if (!block) byDir.set(dirname(now.source), (byDir.get(dirname(now.source)) ?? 0) + needed([d], format));
  }
  for (const [dir, bytes] of byDir)
    await checkRoom(`directory ${dir}`, await host.freeBytes(dir, signal), bytes);
  const refs = parseVmConfigRefs(current, { nvramDir: input.nvramDir });
  const stored = storedConfigFiles(manifest);
  const nvramFile = stored.find((f) => f.kind === "nvram");
  const nvram =
    refs.nvram?.kind === "file" && nvramFile ? { path: refs.nvram.path, file: nvramFile } : undefined;
  return {
    name: original.name,
    uuid,
    inPlace: true,
    disks,
    xml: undefined,
    nvram,
    tpm: tpmPlan(refs.tpms, stored, join(input.swtpmStateDir, uuid)),
    dropped: [],
    emptied: [],
  };
}

function storedConfigFiles(manifest: SnapshotManifest): StoredConfigFile[] {
  return (vmConfigFilesOf(manifest)?.files ?? []).filter((f): f is StoredConfigFile => f.status === "stored");
}

function tpmPlan(
  tpms: ReturnType<typeof parseVmConfigRefs>["tpms"],
  stored: StoredConfigFile[],
  dir: string,
): VmRestorePlan["tpm"] {
  const files = stored.filter((f) => f.kind === "tpm");
  if (files.length === 0) return undefined;
  const emulators = tpms.filter((t) => t.kind === "emulator");
  if (emulators.length !== 1 || emulators[0]?.stateFile)
    throw new CairnError(
      "failed-precondition",
      "the domain's TPM state is not one swtpm state directory; a restore puts back only that",
      {
        hint: "restore the disks alone (restore disk) and the TPM state by hand (cairn agent restore-config)",
      },
    );
  return { dir, files: files.map((file) => ({ rel: file.name.replace(/^tpm\//, ""), file })) };
}

function needed(disks: readonly SnapshotDisk[], format: "raw" | "qcow2"): number {
  // Raw files are sparse too, but the guest may fill them: room for the whole disk is asked.
  return disks.reduce(
    (sum, d) => sum + (format === "raw" ? d.virtualSize : d.dataBytes + qcow2Overhead(d.virtualSize)),
    0,
  );
}

async function checkRoom(where: string, free: number, bytes: number): Promise<void> {
  if (free < bytes)
    throw new CairnError(
      "failed-precondition",
      `${where} has ${mib(free)} free; the restore needs ${mib(bytes)}`,
      {
        hint: "free space there, or restore to other storage (--storage DIR or --pool POOL)",
      },
    );
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

async function checkHostOffers(
  r: ReturnType<typeof readDomainRequirements>,
  host: RestoreHost,
  signal: AbortSignal,
): Promise<void> {
  if (r.arch && r.machine) {
    const machines = await host.machineTypes(r.arch, signal);
    if (!machines.includes(r.machine))
      throw new CairnError(
        "failed-precondition",
        `this host's QEMU has no machine type ${r.machine} for ${r.arch}`,
        {
          hint: `it offers: ${machines.slice(0, 12).join(", ") || "none"}; edit the definition after restoring the disks alone`,
        },
      );
  }
  if (r.loader && !(await host.exists(r.loader, signal)))
    throw new CairnError(
      "failed-precondition",
      `firmware ${r.loader} (the domain's <loader>) does not exist on this host`,
      {
        hint: "install the firmware package the original host had (for example ovmf)",
      },
    );
  if (r.firmware && !(await host.firmwares(signal)).includes(r.firmware))
    throw new CairnError("failed-precondition", `this host's libvirt cannot select ${r.firmware} firmware`, {
      hint: "install the firmware package the original host had (for example ovmf)",
    });
  if (r.emulator && !(await host.exists(r.emulator, signal)))
    throw new CairnError("failed-precondition", `emulator ${r.emulator} does not exist on this host`);
}
