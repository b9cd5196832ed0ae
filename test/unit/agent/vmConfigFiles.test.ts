import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { captureVmConfigFiles } from "../../../agent/src/vmconfig/captureVmConfigFiles.js";
import { restoreVmConfig } from "../../../agent/src/vmconfig/restoreVmConfig.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { decodeInlineBlob } from "../../../shared/src/repository/manifest/inlineBlob.js";
import {
  CONFIG_FILES_KEY,
  type VmConfigFiles,
  vmConfigFilesOf,
} from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import { Repository } from "../../../shared/src/repository/Repository.js";

const UUID = "0b7e1c3a-1111-2222-3333-444455556666";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
let dir: string;
let repo: Repository;
const signal = () => AbortSignal.timeout(10_000);

const xml = (nvram: string) => `<domain type='kvm'><name>web-1</name><uuid>${UUID}</uuid>
  <os><type>hvm</type><loader type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram>${nvram}</nvram></os>
  <devices><tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices></domain>`;

/** Seals a snapshot whose manifest carries `files`, as a backup does. */
async function seal(domainXml: string, files: VmConfigFiles) {
  const w = await repo.beginSnapshot({ vm: { uuid: UUID, name: "web-1" } });
  return w.seal({ domainXml, consistency: { kind: "quiesced" }, extra: { [CONFIG_FILES_KEY]: files } });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "cairn-vmcfg-"));
  repo = await Repository.init(new MemoryObjectStore(), { workers: 1 });
});
afterEach(async () => {
  await repo.close();
  await rm(dir, { recursive: true, force: true });
});

describe("VM configuration files (NVRAM, swtpm state)", () => {
  it("captures NVRAM and every swtpm state file, and restores them byte-identical with their mode", async () => {
    // An OVMF-like variable store: mostly 0xff padding with some variables.
    const nvram = Buffer.alloc(540_672, 0xff);
    randomBytes(4096).copy(nvram, 8192);
    const nvramPath = join(dir, "web-1_VARS.fd");
    await writeFile(nvramPath, nvram);
    await chmod(nvramPath, 0o640);
    const tpmDir = join(dir, "swtpm", UUID, "tpm2");
    await mkdir(tpmDir, { recursive: true });
    const permall = randomBytes(9_000);
    await writeFile(join(tpmDir, "tpm2-00.permall"), permall);
    await writeFile(join(tpmDir, ".lock"), "");

    const files = await captureVmConfigFiles(
      xml(nvramPath),
      { swtpmStateDir: join(dir, "swtpm"), nvramDir: "/nowhere" },
      { signal: signal() },
    );
    expect(files.files.map((f) => [f.kind, f.name, f.status])).toEqual([
      ["nvram", "nvram/web-1_VARS.fd", "stored"],
      ["tpm", "tpm/tpm2/tpm2-00.permall", "stored"],
    ]);
    const nv = files.files[0]!;
    expect(nv).toMatchObject({ path: nvramPath, size: nvram.length, sha256: sha(nvram), mode: 0o640 });
    // Padding compresses: the manifest does not carry half a megabyte of base64.
    expect(nv.status === "stored" && nv.data.length).toBeLessThan(16 * 1024);

    const m = await seal(xml(nvramPath), files);
    const shown = vmConfigFilesOf(await repo.showSnapshot(m.id));
    expect(shown?.files.map((f) => (f.status === "stored" ? f.sha256 : f.reason))).toEqual([
      sha(nvram),
      sha(permall),
    ]);

    const out = join(dir, "out");
    const r = await restoreVmConfig(repo, m.id, out);
    expect(await readFile(r.domainXml, "utf8")).toBe(xml(nvramPath));
    expect(sha(await readFile(join(out, "nvram", "web-1_VARS.fd")))).toBe(sha(nvram));
    expect(sha(await readFile(join(out, "tpm", "tpm2", "tpm2-00.permall")))).toBe(sha(permall));
    // Recorded 0640; restored at most 0600 (restoredFileMode).
    expect((await stat(join(out, "nvram", "web-1_VARS.fd"))).mode & 0o7777).toBe(0o600);
    // A second restore into the same directory needs --force.
    await expect(restoreVmConfig(repo, m.id, out)).rejects.toMatchObject({ code: "already-exists" });
    await restoreVmConfig(repo, m.id, out, { force: true });
  });

  it("records a missing NVRAM file and a never-started TPM as missing with a reason, not a failure", async () => {
    const files = await captureVmConfigFiles(
      xml(join(dir, "absent_VARS.fd")),
      { swtpmStateDir: join(dir, "swtpm"), nvramDir: "/nowhere" },
      { signal: signal() },
    );
    expect(files.files).toEqual([
      expect.objectContaining({ kind: "nvram", status: "missing", reason: "no such file" }),
      expect.objectContaining({
        kind: "tpm",
        status: "missing",
        path: join(dir, "swtpm", UUID),
        reason: expect.stringMatching(/no swtpm state/),
      }),
    ]);
    const m = await seal("<domain/>", files);
    const r = await restoreVmConfig(repo, m.id, join(dir, "out"));
    expect(r.files.map((f) => [f.name, f.out, f.missing])).toEqual([
      ["nvram/absent_VARS.fd", undefined, "no such file"],
      ["tpm", undefined, expect.stringMatching(/no swtpm state/)],
    ]);
  });

  it("a file too large to inline, or not a regular file, is recorded as missing", async () => {
    const path = join(dir, "big.fd");
    await writeFile(path, randomBytes(8192));
    const big = await captureVmConfigFiles(
      xml(path),
      { swtpmStateDir: dir, nvramDir: "/nowhere", maxInlineChars: 4096 },
      { signal: signal() },
    );
    expect(big.files[0]).toMatchObject({ status: "missing", reason: expect.stringMatching(/inline limit/) });
    const notFile = await captureVmConfigFiles(
      xml(dir),
      { swtpmStateDir: dir, nvramDir: "/nowhere" },
      { signal: signal() },
    );
    expect(notFile.files[0]).toMatchObject({ status: "missing", reason: "not a regular file" });
  });

  it("restore refuses content that does not match its recorded sha256, and writes nothing", async () => {
    const path = join(dir, "v.fd");
    await writeFile(path, Buffer.from("original variables"));
    const files = await captureVmConfigFiles(
      xml(path),
      { swtpmStateDir: dir, nvramDir: "/nowhere" },
      { signal: signal() },
    );
    const f = files.files[0]!;
    if (f.status !== "stored") throw new Error("expected the NVRAM to be stored");
    expect(decodeInlineBlob(f.data, "t").toString()).toBe("original variables");
    f.sha256 = sha(Buffer.from("other variables"));
    const m = await seal("<domain/>", files);
    const out = join(dir, "out");
    await expect(restoreVmConfig(repo, m.id, out)).rejects.toMatchObject({
      code: "corrupt",
      message: expect.stringMatching(/nvram\/v.fd .* is corrupt/),
    });
    await expect(stat(out)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("issue #24 hole 6: a recorded setuid/setgid/sticky or group/other mode is masked to at most 0600", async () => {
    const path = join(dir, "v.fd");
    await writeFile(path, Buffer.from("variables"));
    const files = await captureVmConfigFiles(
      xml(path),
      { swtpmStateDir: dir, nvramDir: "/nowhere" },
      { signal: signal() },
    );
    const f = files.files[0]!;
    if (f.status !== "stored") throw new Error("expected the NVRAM to be stored");
    f.mode = 0o7755; // a crafted manifest: setuid, setgid, sticky, world-readable and executable
    const m = await seal("<domain/>", files);
    const out = join(dir, "out");
    const r = await restoreVmConfig(repo, m.id, out);
    expect((await stat(r.files[0]!.out!)).mode & 0o7777).toBe(0o600);
    f.mode = 0o400; // fewer bits than 0600 stay fewer
    const m2 = await seal("<domain/>", files);
    const r2 = await restoreVmConfig(repo, m2.id, join(dir, "out2"));
    expect((await stat(r2.files[0]!.out!)).mode & 0o7777).toBe(0o400);
  });

  it("a name that would leave the restore directory is rejected when the manifest is read", async () => {
    const m = await seal("<domain/>", {
      version: 1,
      capturedAt: new Date().toISOString(),
      files: [{ kind: "nvram", status: "missing", path: "/x", name: "../escape", reason: "r" }],
    });
    await expect(restoreVmConfig(repo, m.id, join(dir, "out"))).rejects.toMatchObject({ code: "corrupt" });
  });
});
