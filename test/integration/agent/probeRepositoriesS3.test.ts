import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROBES_PREFIX } from "../../../agent/src/reach/probeLocation.js";
import { probeRepositories } from "../../../agent/src/reach/probeRepositories.js";
import { S3ObjectStore } from "../../../shared/src/repository/backends/S3ObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { openRepositoryStore } from "../../../shared/src/repositoryLocation/openRepositoryStore.js";
import { SwiftServer } from "../../services/swift/SwiftServer.js";

// Reach probes against the real S3 adapter (Swift's s3api), opened from an s3:// location as the
// agent opens it (docs/transfer-paths.md §2).
let swift: SwiftServer;
const stores: S3ObjectStore[] = [];
const prefix = randomBytes(6).toString("hex");
let repoId = "";

beforeAll(async () => {
  swift = await SwiftServer.start();
  const s = new S3ObjectStore({ ...swift.s3, bucket: "cairn-reach", prefix: `${prefix}/` });
  stores.push(s);
  await s.ensureBucket();
  const r = await Repository.init(s, { chunkSize: 64 * 1024, passphrase: "pw", scryptN: 1024, workers: 1 });
  repoId = r.config.id;
  await r.close();
});
afterAll(async () => {
  for (const s of stores) s.destroy();
  await swift?.stop();
});

describe("probeRepositories on S3", () => {
  it("reaches an encrypted repository by its s3:// location, measures it and leaves no probe object", async () => {
    const env = {
      CAIRN_S3_ENDPOINT: swift.s3.endpoint,
      AWS_ACCESS_KEY_ID: swift.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: swift.s3.secretAccessKey,
      AWS_REGION: swift.s3.region,
    };
    const location = `s3://cairn-reach/${prefix}`;
    const missing = `s3://cairn-reach/${prefix}-none`;
    const reach = await probeRepositories([{ name: "offsite", location }], {
      hostId: "mover-1",
      extraLocations: [missing],
      openStore: (l) => openRepositoryStore(l, env),
      probeBytes: 1024 * 1024,
      signal: AbortSignal.timeout(60_000),
    });
    expect(reach.map((r) => [r.location, r.repositoryId, r.name, r.reachable, r.error])).toEqual([
      [location, repoId, "offsite", true, ""],
      [missing, "", "", false, `${missing} is not a Cairn repository (it has no repository config)`],
    ]);
    expect(reach[0]?.writeMiBs).toBeGreaterThan(0);
    expect(reach[0]?.readMiBs).toBeGreaterThan(0);
    const left: string[] = [];
    for await (const o of (stores[0] as S3ObjectStore).list(PROBES_PREFIX)) left.push(o.key);
    expect(left).toEqual([]);
  });
});
