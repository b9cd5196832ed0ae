import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { abortError, CairnError } from "../../../shared/src/errors/CairnError.js";
import type { UndoStack } from "../backup/pipeline/undo/UndoStack.js";
import { decodeStoredConfigFile } from "../vmconfig/decodeStoredConfigFile.js";
import type { VmRestorePlan } from "./planVmRestore.js";
import { restoredFileMode } from "./restoredFileMode.js";

export interface Owner {
  uid: number;
  gid: number;
}

export interface ConfigFileOwners {
  /** libvirt's QEMU user (it opens the NVRAM file). */
  nvram: Owner;
  /** libvirt's swtpm user (qemu.conf swtpm_user); undefined when this host has none. */
  tpm: Owner | undefined;
}

/**
 * Puts a VM restore's NVRAM file and swtpm state where its plan says, owned as libvirt runs QEMU
 * and swtpm, each file's recorded mode masked (restoredFileMode). Every file is decoded and
 * checked before the first is written. New files and directories are created exclusively and
 * their removal pushed on `undo`; in place, the NVRAM file and the state directory are replaced
 * whole (written beside, then renamed over), so a failure leaves the old ones.
 */
export async function placeConfigFiles(
  plan: VmRestorePlan,
  owners: ConfigFileOwners,
  undo: UndoStack,
  signal: AbortSignal,
): Promise<void> {
  const nvram = plan.nvram?.file && {
    path: plan.nvram.path,
    data: decodeStoredConfigFile(plan.nvram.file, `NVRAM ${plan.nvram.file.name}`),
    mode: restoredFileMode(plan.nvram.file.mode),
  };
  const tpm = plan.tpm && {
    dir: plan.tpm.dir,
    files: plan.tpm.files.map(({ rel, file }) => {
      const out = resolve(plan.tpm!.dir, rel);
      if (!out.startsWith(plan.tpm!.dir + sep))
        throw new CairnError("corrupt", `TPM state file ${file.name} would leave ${plan.tpm!.dir}`);
      return {
        out,
        data: decodeStoredConfigFile(file, `TPM state ${file.name}`),
        mode: restoredFileMode(file.mode),
      };
    }),
  };
  if (tpm && !owners.tpm)
    throw new CairnError(
      "failed-precondition",
      "the snapshot has TPM state but this host has no swtpm user",
      {
        hint: "install swtpm (its user, tss, owns the state), or set swtpmUser in the agent config",
      },
    );
  if (signal.aborted) throw abortError(signal, "placing NVRAM and TPM state");

  if (nvram) {
    const own = async (p: string) => {
      await chown(p, owners.nvram.uid, owners.nvram.gid);
      await chmod(p, nvram.mode);
    };
    await mkdir(dirname(nvram.path), { recursive: true });
    if (plan.inPlace) {
      const tmp = `${nvram.path}.cairn-${randomBytes(4).toString("hex")}`;
      try {
        await writeFile(tmp, nvram.data, { flag: "wx", mode: 0o600 });
        await own(tmp);
        await rename(tmp, nvram.path);
      } catch (e) {
        await rm(tmp, { force: true });
        throw e;
      }
    } else {
      await writeFile(nvram.path, nvram.data, { flag: "wx", mode: 0o600 });
      undo.push(`remove NVRAM ${nvram.path}`, () => rm(nvram.path, { force: true }));
      await own(nvram.path);
    }
  }

  if (tpm && owners.tpm) {
    const owner = owners.tpm;
    // In place: a whole new directory beside the current one, swapped in at the end.
    const dir = plan.inPlace ? `${tpm.dir}.cairn-${randomBytes(4).toString("hex")}` : tpm.dir;
    await mkdir(dirname(tpm.dir), { recursive: true });
    await mkdir(dir, { mode: 0o700 });
    undo.push(`remove TPM state ${dir}`, () => rm(dir, { recursive: true, force: true }));
    await chown(dir, owner.uid, owner.gid);
    for (const f of tpm.files) {
      const out = join(dir, f.out.slice(tpm.dir.length + 1));
      for (let d = dirname(out); d !== dir; d = dirname(d)) {
        await mkdir(d, { recursive: true, mode: 0o700 });
        await chown(d, owner.uid, owner.gid);
      }
      await writeFile(out, f.data, { flag: "wx", mode: 0o600 });
      await chown(out, owner.uid, owner.gid);
      await chmod(out, f.mode);
    }
    if (plan.inPlace) {
      const old = `${tpm.dir}.cairn-old-${randomBytes(4).toString("hex")}`;
      await rename(tpm.dir, old).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e;
      });
      await rename(dir, tpm.dir);
      await rm(old, { recursive: true, force: true });
    }
  }
}
