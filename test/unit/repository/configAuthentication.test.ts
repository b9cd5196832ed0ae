import { describe, expect, it } from "vitest";
import { isCairnError } from "../../../shared/src/errors/CairnError.js";
import { MemoryObjectStore } from "../../../shared/src/repository/backends/MemoryObjectStore.js";
import { Repository } from "../../../shared/src/repository/Repository.js";
import { backup, CS, closesAfterEach, KiB, newRepo, storedChunkIds, vmDisk, whereStored } from "./helpers.js";

// Format §3.1 (config authentication) and §5 (frame version 2): issue #24, hole 4.
const track = closesAfterEach();
const PW = "correct horse";

/** The stored config, as the edits below see it. */
interface Cfg extends Record<string, unknown> {
  id: string;
  version: number;
  createdAt: string;
  chunkSize: number;
  compression: { level: number };
  encryption: { note?: string; kdf: { N: number; salt: string } };
}

async function everything(store: MemoryObjectStore): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for await (const o of store.list("")) out.set(o.key, await store.get(o.key));
  return out;
}

async function rewriteConfig(store: MemoryObjectStore, edit: (c: Cfg) => void) {
  const c = JSON.parse((await store.get("config")).toString()) as Cfg;
  edit(c);
  await store.put("config", Buffer.from(JSON.stringify(c, null, 2)));
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, "expected the open to be refused").toBeInstanceOf(Error);
  return e as Error;
}

/** An encrypted repository with one backup in it. */
async function encryptedWithBackup(): Promise<MemoryObjectStore> {
  const store = new MemoryObjectStore();
  await backup(await track(newRepo(store, PW)), vmDisk(4 * CS));
  return store;
}

describe("downgrade to an unencrypted config", () => {
  it("a config rewritten to encryption:null is refused when opened with the passphrase; no plaintext is written", async () => {
    const store = await encryptedWithBackup();
    await rewriteConfig(store, (c) => {
      Object.assign(c, { encryption: null });
    });
    const before = await everything(store);
    // The probe of issue #24: the next backup, run with the passphrase, stored plaintext.
    const secret = Buffer.from("PLAINTEXT-DISK-DATA ".repeat(20_000)).subarray(0, 2 * CS);
    const e = await refusal(
      Repository.open(store, { passphrase: PW, workers: 1 }).then(async (r) => {
        await track(Promise.resolve(r));
        await backup(r, secret);
      }),
    );
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect(e.message).toBe(
      `repository config at ${store.location} is not encrypted, but a passphrase was given: refusing (possible downgrade)`,
    );
    const after = await everything(store);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [k, v] of after) expect(v.equals(before.get(k) as Buffer), k).toBe(true);
  });

  it("is refused without a passphrase too when the caller expects encryption; opens when it does not", async () => {
    const store = await encryptedWithBackup();
    await rewriteConfig(store, (c) => {
      Object.assign(c, { encryption: null });
    });
    const e = await refusal(Repository.open(store, { requireEncryption: true }));
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    expect(e.message).toMatch(/is not encrypted, but an encrypted repository was expected: refusing/);
    // Nothing says it should be encrypted: it opens as unencrypted, and its encrypted objects do not read.
    const r = await track(Repository.open(store, { workers: 1 }));
    expect(r.keys).toBeUndefined();
  });

  it("an unencrypted repository opened with a passphrase is refused (an agent with a passphrase writes only encrypted)", async () => {
    const store = new MemoryObjectStore();
    await (await newRepo(store)).close();
    const e = await refusal(Repository.open(store, { passphrase: PW }));
    expect(isCairnError(e, "failed-precondition")).toBe(true);
    // An empty passphrase is no passphrase (openRepository passes none then).
    await (await Repository.open(store, { passphrase: "", workers: 1 })).close();
  });
});

describe("config MAC", () => {
  it("init writes a MAC; the repository opens authenticated", async () => {
    const store = await encryptedWithBackup();
    const c = JSON.parse((await store.get("config")).toString());
    expect(c.mac).toMatch(/^[0-9a-f]{64}$/);
    const r = await track(Repository.open(store, { passphrase: PW, workers: 1 }));
    expect(r.configAuthenticated).toBe(true);
  });

  it.each<[string, (c: Cfg) => void]>([
    ["chunk size", (c) => (c.chunkSize = 2 * c.chunkSize)],
    ["compression level", (c) => (c.compression.level = 19)],
    ["format version", (c) => (c.version = 1)],
    ["creation time", (c) => (c.createdAt = "2020-01-01T00:00:00.000Z")],
    ["an added field", (c) => (c.extra = { packs: false })],
    ["the encryption algorithm's extra field", (c) => (c.encryption.note = "x")],
  ])("a changed %s is refused once the master key is unwrapped; nothing is written", async (_, edit) => {
    const store = await encryptedWithBackup();
    await rewriteConfig(store, edit);
    const before = await everything(store);
    const e = await refusal(Repository.open(store, { passphrase: PW, workers: 1 }));
    expect(isCairnError(e, "corrupt")).toBe(true);
    expect(e.message).toBe(
      `the config of repository ${store.location} does not match its MAC: it was modified after it was written (refusing)`,
    );
    expect((await everything(store)).size).toBe(before.size);
  });

  it.each<[string, (c: Cfg) => void]>([
    ["repository id", (c) => (c.id = "0".repeat(32))],
    ["scrypt cost", (c) => (c.encryption.kdf.N = 2 * c.encryption.kdf.N)],
    ["salt", (c) => (c.encryption.kdf.salt = Buffer.alloc(16, 1).toString("base64"))],
  ])("a changed %s fails the key unwrap", async (_, edit) => {
    const store = await encryptedWithBackup();
    await rewriteConfig(store, edit);
    const e = await refusal(Repository.open(store, { passphrase: PW, workers: 1 }));
    expect(isCairnError(e, "permission-denied")).toBe(true);
  });

  it("a removed MAC is refused: the key's wrap says the config was authenticated", async () => {
    const store = await encryptedWithBackup();
    await rewriteConfig(store, (c) => {
      delete c["mac"];
      c["chunkSize"] = 2 * CS;
    });
    const e = await refusal(Repository.open(store, { passphrase: PW, workers: 1 }));
    expect(isCairnError(e, "corrupt")).toBe(true);
    expect(e.message).toMatch(
      /has no MAC, but its key is wrapped for an authenticated config: refusing \(possible downgrade\)/,
    );
  });

  it("formatting does not matter: the MAC is over canonical content", async () => {
    const store = await encryptedWithBackup();
    const c = JSON.parse((await store.get("config")).toString()) as Record<string, unknown>;
    const reordered = Object.fromEntries(Object.entries(c).reverse());
    await store.put("config", Buffer.from(JSON.stringify(reordered)));
    await (await Repository.open(store, { passphrase: PW, workers: 1 })).close();
  });
});

describe("frame header in the AEAD", () => {
  it("a manifest whose compression flag is flipped fails authentication", async () => {
    const store = new MemoryObjectStore();
    const r = await track(newRepo(store, PW));
    const m = await backup(r, vmDisk(2 * CS));
    const key = `snapshots/${m.id}`;
    const f = await store.get(key);
    expect(f[0]).toBe(2);
    f[1] = (f[1] ?? 0) ^ 1;
    await store.put(key, f);
    const e = await refusal(r.showSnapshot(m.id));
    expect(isCairnError(e, "corrupt")).toBe(true);
    expect(e.message).toMatch(/is corrupt: authentication failed$/);
  });

  it.each([1, 2] as const)(
    "a chunk whose compression flag is flipped fails authentication (format %i)",
    async (v) => {
      const store = new MemoryObjectStore();
      const r = await track(newRepo(store, PW, v));
      const text = Buffer.from("compressible ".repeat(10_000)).subarray(0, CS);
      const m = await backup(r, text);
      const disk = await r.openDisk(m.id, "vda");
      const ids = await storedChunkIds(r);
      expect(ids).toHaveLength(1);
      const where = await whereStored(r, ids[0] as string);
      const obj = await store.get(where.key);
      obj[where.offset + 1] = (obj[where.offset + 1] ?? 0) ^ 1;
      await store.put(where.key, obj);
      const e = await refusal(disk.read(0, 64 * KiB));
      expect(isCairnError(e, "corrupt")).toBe(true);
      expect(e.message).toMatch(/authentication failed/);
    },
  );
});
