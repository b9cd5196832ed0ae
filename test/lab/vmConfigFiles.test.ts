import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackup } from "../../agent/src/backup/runBackup.js";
import { DEFAULT_SWTPM_STATE_DIR } from "../../agent/src/vmconfig/captureVmConfigFiles.js";
import {
  type StoredConfigFile,
  vmConfigFilesOf,
} from "../../shared/src/repository/manifest/VmConfigFiles.js";
import { agentHarness } from "./support/agentHarness.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { REPO_ROOT } from "./support/labPaths.js";
import { run } from "./support/run.js";

const lab = new Lab();
let h: Awaited<ReturnType<typeof agentHarness>>;
let n = 0;
const swtpmDirs: string[] = [];
const swtpmLogs: string[] = [];
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

const backup = (vm: LabVm) =>
  runBackup(h.deps, h.config, {
    jobId: `cfg-${++n}`,
    domain: vm.name,
    mode: "auto",
    quiesce: "preferred",
    signal: AbortSignal.timeout(240_000),
  });

/** `cairn agent restore-config`, the real CLI. */
async function restoreConfig(snapshotId: string, out: string) {
  const r = await execa(
    "node",
    [
      "--import",
      "tsx",
      join(REPO_ROOT, "cli/src/main.ts"),
      "agent",
      "restore-config",
      "--repo",
      join(h.dir, "repo"),
      "--snapshot",
      snapshotId,
      "--out",
      out,
      "--json",
    ],
    { cwd: REPO_ROOT, reject: false, timeout: 120_000 },
  );
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { domainXml: string; files: { name: string; out: string | null }[] };
}

/** The config files of a sealed snapshot, as read back from the repository (not the returned object). */
async function storedFiles(snapshotId: string): Promise<StoredConfigFile[]> {
  const rec = vmConfigFilesOf(await h.repository.showSnapshot(snapshotId));
  expect(rec, "the manifest records configuration files").toBeDefined();
  return rec!.files.map((f) => {
    expect(f.status, `${f.name}: ${f.status === "missing" ? f.reason : ""}`).toBe("stored");
    return f as StoredConfigFile;
  });
}

const uuidOf = async (vm: LabVm) => (await vm.virsh(["domuuid", vm.name])).stdout.trim();

beforeAll(async () => {
  h = await agentHarness(lab.host1, { chunkSize: 256 * 1024 });
});
afterAll(async () => {
  await lab.dispose();
  for (const d of swtpmDirs) await rm(d, { recursive: true, force: true });
  for (const name of swtpmLogs) await rm(`/var/log/swtpm/libvirt/qemu/${name}-swtpm.log`, { force: true });
  await h?.dispose();
});

describe("NVRAM and TPM state go into the snapshot", () => {
  it("offline: a shut-off domain's NVRAM and swtpm state are stored with their sha256 and restored byte-identical", async () => {
    // An OVMF-like variable store (padding + some variables) the domain names in <os><nvram>.
    const nvram = Buffer.alloc(128 * 1024, 0xff);
    randomBytes(6000).copy(nvram, 4096);
    const nvramPath = join(h.dir, `cfg-${randomBytes(3).toString("hex")}_VARS.fd`);
    await writeFile(nvramPath, nvram, { mode: 0o600 });
    const vm = await lab.createVm({
      label: "cfg-off",
      disks: [{ kind: "blank", format: "qcow2", sizeMiB: 16 }],
      // libvirt wants a loader beside an <nvram>; the domain is never started, so none is installed.
      uefi: { loader: join(h.dir, "OVMF_CODE.fd"), nvram: nvramPath },
      tpm: true,
    });
    swtpmLogs.push(vm.name);
    // Never started, so swtpm never made state: lay it out as libvirt's swtpm would.
    const stateDir = join(DEFAULT_SWTPM_STATE_DIR, await uuidOf(vm));
    swtpmDirs.push(stateDir);
    await mkdir(join(stateDir, "tpm2"), { recursive: true });
    const permall = randomBytes(3 * 4096 + 123);
    const permallPath = join(stateDir, "tpm2", "tpm2-00.permall");
    await writeFile(permallPath, permall);
    await chmod(permallPath, 0o600);
    const tss = (await run("getent", ["passwd", "tss"])).stdout.split(":");
    await chown(permallPath, Number(tss[2]), Number(tss[3]));

    const r = await backup(vm);
    expect(r.offline).toBe(true);
    const files = await storedFiles(r.manifest.id);
    expect(files.map((f) => [f.kind, f.name, f.path, f.size, f.sha256, f.mode])).toEqual([
      ["nvram", `nvram/${nvramPath.split("/").at(-1)}`, nvramPath, nvram.length, sha(nvram), 0o600],
      ["tpm", "tpm/tpm2/tpm2-00.permall", permallPath, permall.length, sha(permall), 0o600],
    ]);
    expect(files[1]).toMatchObject({ uid: Number(tss[2]), gid: Number(tss[3]) });

    const out = join(h.dir, "restore-off");
    const restored = await restoreConfig(r.manifest.id, out);
    expect(await readFile(restored.domainXml, "utf8")).toBe(r.manifest.domainXml);
    expect(r.manifest.domainXml).toContain(`<nvram>${nvramPath}</nvram>`);
    expect(sha(await readFile(join(out, files[0]!.name)))).toBe(sha(nvram));
    expect(sha(await readFile(join(out, "tpm/tpm2/tpm2-00.permall")))).toBe(sha(permall));
    expect((await stat(join(out, "tpm/tpm2/tpm2-00.permall"))).mode & 0o7777).toBe(0o600);
  });

  it("live: a running domain's real swtpm state is stored and restored byte-identical", async () => {
    const vm = await lab.createVm({
      label: "cfg-live",
      disks: [{ kind: "blank", format: "qcow2", sizeMiB: 16 }],
      tpm: true,
      machine: "pc", // q35 + TPM: this guest kernel loses its PCIe root-port devices
    });
    swtpmLogs.push(vm.name);
    const stateDir = join(DEFAULT_SWTPM_STATE_DIR, await uuidOf(vm));
    swtpmDirs.push(stateDir);
    await vm.boot();
    const r = await backup(vm);
    expect(r.offline).toBe(false);
    const files = await storedFiles(r.manifest.id);
    // swtpm_setup made the TPM 2.0 state at first start; the guest never touches the TPM after.
    const permall = files.find((f) => f.name === "tpm/tpm2/tpm2-00.permall");
    expect(permall, JSON.stringify(files.map((f) => f.name))).toBeDefined();
    for (const f of files) {
      expect(f.kind).toBe("tpm");
      expect(f.path.startsWith(`${stateDir}/`)).toBe(true);
      expect(f.sha256, f.path).toBe(sha(await readFile(f.path)));
    }
    const out = join(h.dir, "restore-live");
    const restored = await restoreConfig(r.manifest.id, out);
    expect(restored.files.map((f) => f.name)).toEqual(files.map((f) => f.name));
    for (const f of files) expect(sha(await readFile(join(out, f.name))), f.name).toBe(f.sha256);
  });
});
