import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { S3ObjectStore } from "../../../shared/src/repository/backends/S3ObjectStore.js";
import { SwiftServer } from "../../services/swift/SwiftServer.js";
import { objectStoreContract } from "../../support/objectStoreContract.js";

let swift: SwiftServer;
const stores: S3ObjectStore[] = [];
beforeAll(async () => {
  swift = await SwiftServer.start();
});
afterAll(async () => {
  for (const s of stores) s.destroy();
  await swift?.stop();
});

async function fresh(): Promise<S3ObjectStore> {
  const s = new S3ObjectStore({
    ...swift.s3,
    bucket: "cairn-contract",
    prefix: `${randomBytes(6).toString("hex")}/`,
  });
  stores.push(s);
  await s.ensureBucket();
  return s;
}

objectStoreContract("S3ObjectStore on Swift s3api", fresh);

describe("S3ObjectStore specifics", () => {
  it("a wrong secret is refused (the server checks signatures)", async () => {
    const s = new S3ObjectStore({ ...swift.s3, secretAccessKey: "wrong", bucket: "cairn-contract" });
    stores.push(s);
    const e = await s.put("x", Buffer.from("x")).catch((x: unknown) => x);
    expect(isCairnError(e, "permission-denied")).toBe(true);
  });
});
