import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { BASE_ALLOCATION, NBD_STATE_HOLE, NBD_STATE_ZERO } from "../../../shared/src/nbd/constants.js";
import { FileBlockDevice } from "../../../shared/src/nbd/FileBlockDevice.js";
import { MemoryBlockDevice } from "../../../shared/src/nbd/MemoryBlockDevice.js";
import { NbdClient } from "../../../shared/src/nbd/NbdClient.js";
import { NbdServer } from "../../../shared/src/nbd/NbdServer.js";
import { nbdinfoMap, unixUri } from "./support/nbdinfoMap.js";
import { Peers, run } from "./support/processes.js";

const MiB = 1024 * 1024;
const peers = new Peers();
const servers: NbdServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers.length = 0;
});
afterAll(() => peers.stopAll());

async function serve(dev: Record<string, import("../../../shared/src/nbd/BlockDevice.js").BlockDevice>) {
  const dir = await peers.tempDir();
  const sock = join(dir, "srv.sock");
  const s = new NbdServer({ exports: dev });
  servers.push(s);
  await s.listen({ path: sock });
  return { sock, dir };
}

/** A sparse memory disk with data at known places. */
async function sampleMemoryDisk(size = 64 * MiB) {
  const dev = new MemoryBlockDevice(size);
  const a = randomBytes(3 * MiB);
  const b = randomBytes(100_000);
  await dev.write(MiB, a);
  await dev.write(40 * MiB + 12345, b);
  const model = Buffer.alloc(size);
  a.copy(model, MiB);
  b.copy(model, 40 * MiB + 12345);
  return { dev, model };
}

describe("our server vs real clients", () => {
  it("qemu-img convert from our server gives a bit-identical image", async () => {
    const { dev, model } = await sampleMemoryDisk();
    const { sock, dir } = await serve({ "": dev });
    const out = join(dir, "out.raw");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", unixUri(sock), out]);
    expect((await readFile(out)).equals(model)).toBe(true);
  });

  it("nbdcopy reads the same bytes (and nbdinfo sees size and read-only flag)", async () => {
    const { dev, model } = await sampleMemoryDisk();
    const ro = {
      size: dev.size,
      readOnly: true,
      read: dev.read.bind(dev),
      blockStatus: dev.blockStatus.bind(dev),
    };
    const { sock, dir } = await serve({ disk1: ro });
    const info = JSON.parse(await run("nbdinfo", ["--json", unixUri(sock, "disk1")]));
    const ex = info.exports[0];
    expect(ex["export-size"]).toBe(model.length);
    expect(ex["is_read_only"]).toBe(true);
    expect(ex["can_multi_conn"]).toBe(true);
    expect(ex["block_size_maximum"]).toBe(32 * MiB);
    const out = join(dir, "copy.raw");
    await writeFile(out, "");
    await run("nbdcopy", ["--connections=4", unixUri(sock, "disk1"), out]);
    expect(
      createHash("sha256")
        .update(await readFile(out))
        .digest("hex"),
    ).toBe(createHash("sha256").update(model).digest("hex"));
    const list = await run("nbdinfo", ["--list", "--json", unixUri(sock)]);
    expect(JSON.parse(list).exports.map((e: { "export-name": string }) => e["export-name"])).toEqual([
      "disk1",
    ]);
  });

  it("nbdinfo --map shows our allocation (holes as hole,zero)", async () => {
    const { dev } = await sampleMemoryDisk();
    const { sock } = await serve({ "": dev });
    const map = await nbdinfoMap(unixUri(sock), BASE_ALLOCATION);
    const hz = NBD_STATE_HOLE | NBD_STATE_ZERO;
    // 64 KiB blocks: the 100000 bytes at 40M+12345 touch two blocks.
    expect(map).toEqual([
      { offset: 0, length: MiB, flags: hz },
      { offset: MiB, length: 3 * MiB, flags: 0 },
      { offset: 4 * MiB, length: 36 * MiB, flags: hz },
      { offset: 40 * MiB, length: 128 * 1024, flags: 0 },
      { offset: 40 * MiB + 128 * 1024, length: 24 * MiB - 128 * 1024, flags: hz },
    ]);
  });

  it("qemu-io writes land on a file-backed device, and our client reads them back", async () => {
    const dir = await peers.tempDir();
    const file = join(dir, "disk.raw");
    await writeFile(file, Buffer.alloc(8 * MiB, 0x33));
    const dev = await FileBlockDevice.open(file, { readOnly: false });
    const { sock } = await serve({ "": dev });
    await run("qemu-io", [
      "-f",
      "raw",
      "-c",
      "write -P 0x5a 1M 512k",
      "-c",
      "write -z 3M 1M",
      "-c",
      "flush",
      unixUri(sock),
    ]);
    const c = await NbdClient.connect({ target: { path: sock }, metaContexts: [BASE_ALLOCATION] });
    expect((await c.read(MiB, 512 * 1024)).equals(Buffer.alloc(512 * 1024, 0x5a))).toBe(true);
    expect((await c.read(3 * MiB, MiB)).equals(Buffer.alloc(MiB))).toBe(true);
    expect(await c.mapExtents(BASE_ALLOCATION)).toEqual([
      { offset: 0, length: 3 * MiB, flags: 0 },
      { offset: 3 * MiB, length: MiB, flags: NBD_STATE_ZERO },
      { offset: 4 * MiB, length: 4 * MiB, flags: 0 },
    ]);
    await c.close();
    await dev.close();
    const f = await readFile(file);
    expect(f.subarray(MiB, MiB + 512 * 1024).equals(Buffer.alloc(512 * 1024, 0x5a))).toBe(true);
    expect(f.subarray(3 * MiB, 4 * MiB).equals(Buffer.alloc(MiB))).toBe(true);
    expect(f[0]).toBe(0x33);
  });

  it("refuses writes to read-only exports and out-of-bounds requests, and stays usable", async () => {
    const { dev, model } = await sampleMemoryDisk(MiB * 4);
    const ro = { size: dev.size, readOnly: true, read: dev.read.bind(dev) };
    const { sock } = await serve({ "": ro });
    const c = await NbdClient.connect({ target: { path: sock } });
    expect(c.readOnly).toBe(true);
    // Bypass the client's own checks to prove the server's.
    const conn = (
      c as unknown as { conns: import("../../../shared/src/nbd/NbdConnection.js").NbdConnection[] }
    ).conns[0]!;
    await expect(conn.command(1, 0, 0, 4, Buffer.alloc(4))).rejects.toMatchObject({
      details: { errnoName: "EPERM" },
    });
    await expect(conn.readInto(4 * MiB - 10, Buffer.alloc(20))).rejects.toMatchObject({
      details: { errnoName: "EINVAL" },
    });
    expect((await c.read(MiB, 1000)).equals(model.subarray(MiB, MiB + 1000))).toBe(true);
    await c.close();
  });

  it("TCP without TLS is refused except on loopback with explicit opt-in", async () => {
    const s = new NbdServer({ exports: { "": new MemoryBlockDevice(MiB) } });
    await expect(s.listen({ host: "127.0.0.1", port: 0 })).rejects.toMatchObject({
      code: "invalid-argument",
    });
    const s2 = new NbdServer({ exports: { "": new MemoryBlockDevice(MiB) }, allowPlaintextLoopback: true });
    await expect(s2.listen({ host: "0.0.0.0", port: 0 })).rejects.toMatchObject({ code: "invalid-argument" });
    servers.push(s2);
    const t = await s2.listen({ host: "127.0.0.1", port: 0 });
    expect("port" in t && t.port > 0).toBe(true);
    const c = await NbdClient.connect({ target: t });
    expect(c.size).toBe(MiB);
    await c.close();
  });

  it("a client that disconnects mid-request aborts the device call; server.close() fails pending reads as unavailable", async () => {
    let sawAbort: Promise<void> | undefined;
    const slow = {
      size: MiB,
      readOnly: true,
      read: (_o: number, n: number, signal: AbortSignal) => {
        sawAbort = new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
        return new Promise<Buffer>((resolve) => setTimeout(() => resolve(Buffer.alloc(n)), 60_000).unref());
      },
    };
    const { sock } = await serve({ "": slow });
    const c = await NbdClient.connect({ target: { path: sock }, connections: 2 });
    expect(c.connectionCount).toBe(2); // read-only export: CAN_MULTI_CONN
    const pending = c.read(0, 4096).catch((e) => e);
    await new Promise((r) => setTimeout(r, 100));
    c.destroy();
    expect((await pending).code).toBe("aborted");
    await sawAbort;

    const c2 = await NbdClient.connect({ target: { path: sock } });
    const p2 = c2.read(0, 4096).catch((e) => e);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await servers.pop()!.close();
    const e = await p2;
    expect(e.code).toBe("unavailable");
    expect(e.transient).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});
