import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { BASE_ALLOCATION } from "../../../shared/src/nbd/constants.js";
import { MemoryBlockDevice } from "../../../shared/src/nbd/MemoryBlockDevice.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { NbdServer } from "../../../shared/src/nbd/NbdServer.js";
import { readExtentsTo } from "../../../shared/src/nbd/readExtents.js";
import { freePort, Peers, run } from "./support/processes.js";
import { makeTestPki, type TestPki } from "./support/tlsCerts.js";

const MiB = 1024 * 1024;
const peers = new Peers();
let pki: TestPki;
let otherPki: TestPki;
afterAll(() => peers.stopAll());
beforeAll(async () => {
  pki = await makeTestPki(await peers.tempDir("cairn-pki-"));
  otherPki = await makeTestPki(await peers.tempDir("cairn-pki2-"));
});

describe("STARTTLS against qemu-nbd --object tls-creds-x509", () => {
  let port: number;
  let image: Buffer;

  beforeAll(async () => {
    const dir = await peers.tempDir();
    image = randomBytes(8 * MiB);
    await writeFile(join(dir, "disk.raw"), image);
    port = await freePort();
    await peers.spawn(
      "qemu-nbd",
      [
        "--object",
        `tls-creds-x509,id=tls0,dir=${pki.dir},endpoint=server,verify-peer=on`,
        "--tls-creds",
        "tls0",
        "--bind",
        "127.0.0.1",
        "--port",
        String(port),
        "--persistent",
        "--shared=8",
        "--read-only",
        "--format",
        "raw",
        join(dir, "disk.raw"),
      ],
      { port },
    );
  });

  it("reads over TLS with a client certificate", async () => {
    const c = await NbdClient.connect({
      target: { host: "127.0.0.1", port },
      tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
      metaContexts: [BASE_ALLOCATION],
    });
    try {
      expect(c.size).toBe(image.length);
      expect((await c.read(MiB, 3 * MiB)).equals(image.subarray(MiB, 4 * MiB))).toBe(true);
      expect((await c.mapExtents(BASE_ALLOCATION)).length).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });

  it("reads whole chunks over TLS straight into the caller's buffers, byte-exact", async () => {
    const c = await NbdClient.connect({
      target: { host: "127.0.0.1", port },
      tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
    });
    try {
      // Without tlsReadInto every TLS record is a fresh Buffer through a Readable stream (GC-bound).
      expect(c.readsIntoBuffers).toBe(true);
      const chunk = 256 * 1024;
      const got = Buffer.alloc(image.length);
      const r = await readExtentsTo(
        c,
        [{ offset: 4096, length: image.length - 8192 }],
        (offset, data) => {
          data.copy(got, offset);
        },
        {
          requestSize: MiB,
          depth: 4,
          chunkSize: chunk,
          allocate: (len) => ({ buffer: Buffer.alloc(len), owner: undefined }),
        },
      );
      expect(r.bytesRead).toBe(image.length - 8192);
      expect(got.subarray(4096, image.length - 4096).equals(image.subarray(4096, image.length - 4096))).toBe(
        true,
      );
    } finally {
      await c.close();
    }
  });

  it("plaintext is refused with TLS required", async () => {
    const e = await NbdClient.connect({ target: { host: "127.0.0.1", port } }).catch((x) => x);
    expect(e).toBeInstanceOf(CairnError);
    expect(e.code).toBe("failed-precondition");
    expect(e.message).toMatch(/TLS required/);
  });

  it("a server certificate from another CA is rejected", async () => {
    const e = await NbdClient.connect({
      target: { host: "127.0.0.1", port },
      tls: { ca: otherPki.ca, cert: otherPki.clientCert, key: otherPki.clientKey },
    }).catch((x) => x);
    expect(e).toBeInstanceOf(CairnError);
    expect(e.code).toBe("unauthenticated");
  });
});

describe("our server with TLS", () => {
  it("serves our client and nbdinfo (libnbd) over TLS on TCP loopback, and refuses plaintext", async () => {
    const dev = new MemoryBlockDevice(4 * MiB);
    const data = randomBytes(MiB);
    await dev.write(MiB, data);
    const srv = new NbdServer({
      exports: { "": dev },
      tls: { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca },
    });
    const t = await srv.listen({ host: "127.0.0.1", port: 0 });
    try {
      const c = await NbdClient.connect({
        target: t,
        tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
      });
      expect((await c.read(MiB, MiB)).equals(data)).toBe(true);
      await c.close();
      await expect(NbdClient.connect({ target: t })).rejects.toMatchObject({ code: "failed-precondition" });
      if (!("port" in t)) throw new Error("expected TCP");
      const info = JSON.parse(
        await run("nbdinfo", ["--json", `nbds://127.0.0.1:${t.port}/?tls-certificates=${pki.dir}`]),
      );
      expect(info.exports[0]["export-size"]).toBe(4 * MiB);
    } finally {
      await srv.close();
    }
  });
});
