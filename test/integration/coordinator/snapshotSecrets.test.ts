import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { snapshotRecordOf } from "../../../coordinator/src/snapshots/snapshotRecordOf.js";
import { LocalObjectStore } from "../../../shared/src/repository/backends/LocalObjectStore.js";
import { CONFIG_FILES_KEY } from "../../../shared/src/repository/manifest/VmConfigFiles.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { startTestCoordinator, type TestCoordinator } from "../../support/coordinatorHarness.js";

// #24 hole 5: ShowSnapshot (role viewer) returned the whole manifest, TPM and NVRAM state included.
const SECRET = Buffer.from("tpm state: seal-key-material").toString("base64");
const configFiles = {
  version: 1,
  capturedAt: new Date().toISOString(),
  files: [
    {
      kind: "tpm",
      status: "stored",
      path: "/var/lib/libvirt/swtpm/u/tpm2/tpm2-00.permall",
      name: "tpm/tpm2/tpm2-00.permall",
      size: 28,
      sha256: "0".repeat(64),
      mode: 0o600,
      uid: 0,
      gid: 0,
      encoding: "zstd+base64",
      data: SECRET,
    },
  ],
};

describe("snapshot metadata never carries VM secrets", () => {
  let c: TestCoordinator;
  let manifestJson: string;
  beforeAll(async () => {
    c = await startTestCoordinator();
    const r = await Repository.open(new LocalObjectStore(c.repoPath));
    try {
      const w = await r.beginSnapshot({
        vm: { uuid: "6f0c5a52-8a0e-4a5e-9d53-2f1d6b0c0a01", name: "vm-secret" },
      });
      const d = await w.addDisk({ target: "vda", virtualSize: 1 << 16, sourceFormat: "raw", kind: "full" });
      await d.finish();
      const m = await w.seal({
        domainXml: "<domain/>",
        consistency: { kind: "quiesced" },
        labels: {},
        extra: { jobId: "job-x", [CONFIG_FILES_KEY]: configFiles },
      });
      manifestJson = JSON.stringify(m);
    } finally {
      await r.close();
    }
  });
  afterAll(() => c?.dispose());

  it("the index drops the contents, and ShowSnapshot answers metadata only, to a viewer and an admin", async () => {
    expect(manifestJson).toContain(SECRET);
    const indexed = snapshotRecordOf(manifestJson, "main");
    expect(indexed.manifestJson).not.toContain(SECRET);
    await c.running.ctx.store.putSnapshot(indexed);
    // An entry indexed before the index dropped contents still answers without them.
    const legacyId = `${indexed.id}-legacy`;
    await c.running.ctx.store.putSnapshot({ ...indexed, id: legacyId, manifestJson });
    const viewer = (await c.admin().createToken({ name: "ro", role: "viewer" })).token;
    for (const token of [viewer, undefined]) {
      for (const id of [indexed.id, legacyId]) {
        const s = await c.admin(token).showSnapshot({ snapshotId: id });
        expect(s.manifestJson).not.toContain(SECRET);
        const file = JSON.parse(s.manifestJson).extra[CONFIG_FILES_KEY].files[0];
        expect(file).toMatchObject({ kind: "tpm", size: 28, data: null, redacted: true });
      }
    }
  });
});
