import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pullBackupXml } from "../../agent/src/hypervisor/backupXml.js";
import { QemuNbdExport } from "../../agent/src/offline/QemuNbdExport.js";
import { ADDRESS_IN_USE, withExportPort } from "../../agent/src/transfer/exportPort.js";
import { FileLibvirtTlsDir } from "../../agent/src/transfer/FileLibvirtTlsDir.js";
import type { JobCredentials } from "../../agent/src/transfer/JobTls.js";
import { OpensslJobTlsMinter } from "../../agent/src/transfer/OpensslJobTlsMinter.js";
import { NbdClient } from "../../shared/src/nbd/NbdClient.js";
import type { NbdTlsOptions } from "../../shared/src/nbd/NbdConnection.js";
import { createKeyAndCsr } from "../../shared/src/pki/createKeyAndCsr.js";
import { runOpenssl } from "../../shared/src/pki/runOpenssl.js";
import type { LabVm } from "./support/LabVm.js";
import { Lab } from "./support/lab.js";
import { LAB_RUN_ROOT } from "./support/labPaths.js";
import { NetNs } from "./support/NetNs.js";
import { run } from "./support/run.js";

/**
 * Network exports with TLS (docs/transfer-paths.md §5), end to end on real libvirt/QEMU: the
 * reader runs in another network namespace and reaches the export over a veth pair.
 */

const MiB = 1024 * 1024;
const READER = join(import.meta.dirname, "support", "nbdReaderMain.ts");
const PORTS = { min: 10809, max: 10899 };
const lab = new Lab();
const minter = new OpensslJobTlsMinter();
let ns: NetNs;
let work: string;
let vm: LabVm | undefined;
/** The reader's fleet identity: its key, and its certificate from a fleet CA (not the job's). */
let reader: { keyPem: string; fleetCertPem: string };
const cleanups: (() => Promise<unknown>)[] = [];
const sig = (ms = 120_000) => AbortSignal.timeout(ms);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

type ReadAnswer = { ok: true; size: number; sha256: string[] } | { ok: false; code: string; message: string };

/** Reads [0, length) of the export from inside the namespace with Cairn's NBD client. */
async function readFromNs(
  port: number,
  exportName: string,
  tls: NbdTlsOptions | undefined,
  length: number,
): Promise<ReadAnswer> {
  const input = JSON.stringify({
    host: ns.hostAddress,
    port,
    exportName,
    ...(tls ? { tls } : {}),
    reads: [{ offset: 0, length }],
  });
  return JSON.parse(await ns.node(READER, [], input, sig(90_000))) as ReadAnswer;
}

/** The four clients the issue names: the assigned reader, and three that must be refused. */
function clients(creds: JobCredentials): Record<string, NbdTlsOptions | undefined> {
  const servername = creds.serverName;
  return {
    reader: { ca: creds.caPem, cert: creds.clientCertPem, key: reader.keyPem, servername },
    plaintext: undefined,
    otherCa: { ca: creds.caPem, cert: reader.fleetCertPem, key: reader.keyPem, servername },
    noCert: { ca: creds.caPem, servername },
  };
}

/** Runs the four clients against an export and checks who gets in. */
async function checkAccess(
  port: number,
  exportName: string,
  creds: JobCredentials,
  length: number,
  want: string,
) {
  const c = clients(creds);
  const good = await readFromNs(port, exportName, c.reader, length);
  expect(good).toMatchObject({ ok: true, sha256: [want] });
  const plain = await readFromNs(port, exportName, c.plaintext, length);
  // The server's own refusal: NBD_REP_ERR_TLS_REQD to every option before STARTTLS.
  expect(plain).toMatchObject({ ok: false, message: expect.stringMatching(/TLS required/) });
  const other = await readFromNs(port, exportName, c.otherCa, length);
  expect(other.ok).toBe(false);
  const none = await readFromNs(port, exportName, c.noCert, length);
  expect(none.ok).toBe(false);
  console.log(
    `[transferTls] port ${port}: reader ok; plaintext: ${msg(plain)}; fleet-CA cert: ${msg(other)}; no cert: ${msg(none)}`,
  );
}
const msg = (a: ReadAnswer) => (a.ok ? "ACCEPTED" : `${a.code}: ${a.message}`);

beforeAll(async () => {
  ns = await NetNs.create(sig());
  cleanups.push(() => ns.dispose());
  work = await mkdtemp(join(LAB_RUN_ROOT, "tls-"));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  // A fleet CA and the reader's fleet certificate, as enrollment would make them.
  const { keyPem, csrPem } = await createKeyAndCsr({ commonName: "mover-1", signal: sig() });
  const f = (n: string) => join(work, n);
  await writeFile(f("reader.csr"), csrPem);
  await runOpenssl(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f("fleet-ca.key")],
    sig(),
  );
  await runOpenssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      f("fleet-ca.key"),
      "-subj",
      "/CN=cairn fleet CA",
      "-days",
      "1",
      "-out",
      f("fleet-ca.pem"),
    ],
    sig(),
  );
  const fleetCertPem = await runOpenssl(
    [
      "x509",
      "-req",
      "-in",
      f("reader.csr"),
      "-CA",
      f("fleet-ca.pem"),
      "-CAkey",
      f("fleet-ca.key"),
      "-days",
      "1",
    ],
    sig(),
  );
  reader = { keyPem, fleetCertPem };
});

afterAll(async () => {
  if (vm) await vm.virsh(["domjobabort", vm.name], 30_000).catch(() => undefined);
  await lab.dispose();
  for (const c of cleanups.reverse()) await c().catch((e) => console.error("[transferTls] cleanup:", e));
});

describe("network exports with TLS (docs/transfer-paths.md §5)", () => {
  it("live VM: libvirt pull backup on TCP+TLS; only the job's reader gets in; QEMU loads the credentials at backup-begin", async () => {
    const host = lab.host1;
    const tlsDir = new FileLibvirtTlsDir(host.backupTls);
    await tlsDir.check(sig());
    vm = await lab.createVm({
      label: "tls",
      guestAgent: false,
      disks: [{ kind: "blank", format: "qcow2", sizeMiB: 32, randomMiB: 8 }],
    });
    await vm.start();
    const want = sha(await vm.readImage("vda", 0, 8 * MiB));
    const creds = await minter.mint(
      {
        dir: join(work, "job-live"),
        serverName: ns.hostAddress,
        readerCertificatePem: reader.fleetCertPem,
        readerName: "mover-1",
      },
      sig(),
    );
    const begin = async (port: number) => {
      const xmlPath = join(vm!.dir, `backup-${port}.xml`);
      await writeFile(
        xmlPath,
        pullBackupXml({
          tcp: { host: ns.hostAddress, port, tls: true },
          // libvirt 9.0 needs an explicit scratch file for a type='file' disk ("argument key
          // 'filename' must not have null value" otherwise).
          disks: [{ target: "vda", backup: true, scratchPath: join(vm!.dir, `scratch-${port}.qcow2`) }],
        }),
      );
      await vm!.virsh(["backup-begin", vm!.name, "--backupxml", xmlPath]);
      return port;
    };

    // A port someone else holds: QEMU's bind fails with words the allocator recognises.
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(PORTS.min, ns.hostAddress, r));
    try {
      const lost = await tlsDir.withCredentials(creds, () => begin(PORTS.min), sig()).catch((e: Error) => e);
      expect(lost).toBeInstanceOf(Error);
      expect((lost as Error).message).toMatch(ADDRESS_IN_USE);
      console.log(
        `[transferTls] backup-begin on a taken port: ${(lost as Error).message.split("\n").at(-1)}`,
      );
      const port = await withExportPort(
        { host: ns.hostAddress, min: PORTS.min, max: PORTS.max },
        (p) => tlsDir.withCredentials(creds, () => begin(p), sig()),
        sig(),
      );
      expect(port).not.toBe(PORTS.min);

      // The directory is empty again: QEMU must have loaded the files while backup-begin ran.
      expect(await readdir(host.backupTls.dir)).toEqual([]);
      const objects = await vm.virsh([
        "qemu-monitor-command",
        vm.name,
        '{"execute":"qom-list","arguments":{"path":"/objects"}}',
      ]);
      const tlsObjects = (JSON.parse(objects.stdout).return as { name: string; type: string }[]).filter((o) =>
        o.type.includes("tls-creds"),
      );
      console.log(`[transferTls] QEMU objects after backup-begin: ${JSON.stringify(tlsObjects)}`);
      expect(tlsObjects.length).toBe(1);
      // What libvirt gave it: our directory, and peer verification (qemu.conf backup_tls_x509_verify).
      const qom = async (property: string) =>
        JSON.parse(
          (
            await vm!.virsh([
              "qemu-monitor-command",
              vm!.name,
              JSON.stringify({
                execute: "qom-get",
                arguments: { path: `/objects/${tlsObjects[0]!.name}`, property },
              }),
            ])
          ).stdout,
        ).return;
      const [qemuDir, verifyPeer, endpoint] = [
        await qom("dir"),
        await qom("verify-peer"),
        await qom("endpoint"),
      ];
      console.log(
        `[transferTls] ${tlsObjects[0]!.name}: dir=${qemuDir} verify-peer=${verifyPeer} endpoint=${endpoint}`,
      );
      expect(qemuDir).toBe(host.backupTls.dir);
      expect(verifyPeer).toBe(true);

      await checkAccess(port, "vda", creds, 8 * MiB, want);
      // The next job's credentials in the directory do not change what this export accepts.
      const next = await minter.mint(
        {
          dir: join(work, "job-next"),
          serverName: ns.hostAddress,
          readerCertificatePem: reader.fleetCertPem,
          readerName: "mover-2",
        },
        sig(),
      );
      await tlsDir.withCredentials(
        next,
        async () => {
          expect((await readdir(host.backupTls.dir)).sort()).toEqual([
            "ca-cert.pem",
            "dh-params.pem",
            "server-cert.pem",
            "server-key.pem",
          ]);
          expect(await readFromNs(port, "vda", clients(creds).reader, MiB)).toMatchObject({ ok: true });
          expect(await readFromNs(port, "vda", clients(next).reader, MiB)).toMatchObject({ ok: false });
        },
        sig(),
      );
      await vm.virsh(["domjobabort", vm.name]);
      // The export ends with the job: nothing listens any more.
      expect((await readFromNs(port, "vda", clients(creds).reader, MiB)).ok).toBe(false);
    } finally {
      await new Promise<void>((r) => squatter.close(() => r()));
    }
    // No key left behind for the next QEMU to load.
    expect(await readdir(host.backupTls.dir)).toEqual([]);
  });

  it("second libvirt host: its own backup TLS directory in its own qemu.conf, and a TLS pull backup there", async () => {
    const host2 = await lab.startSecondHost();
    expect(host2.backupTls.dir).not.toBe(lab.host1.backupTls.dir);
    const tlsDir = new FileLibvirtTlsDir(host2.backupTls);
    await tlsDir.check(sig());
    // Host 1's directory is not this daemon's: check() says which setting is wrong.
    await expect(
      new FileLibvirtTlsDir({ ...host2.backupTls, dir: lab.host1.backupTls.dir }).check(sig()),
    ).rejects.toMatchObject({ code: "failed-precondition", message: /backup_tls_x509_cert_dir/ });
    const vm2 = await lab.createVm({
      label: "tls2",
      host: host2,
      guestAgent: false,
      disks: [{ kind: "blank", format: "qcow2", sizeMiB: 16, randomMiB: 4 }],
    });
    await vm2.start();
    const want = sha(await vm2.readImage("vda", 0, 4 * MiB));
    const creds = await minter.mint(
      {
        dir: join(work, "job-host2"),
        serverName: ns.hostAddress,
        readerCertificatePem: reader.fleetCertPem,
        readerName: "mover-1",
      },
      sig(),
    );
    const port = await withExportPort(
      { host: ns.hostAddress, ...PORTS },
      (p) =>
        tlsDir.withCredentials(
          creds,
          async () => {
            const xmlPath = join(vm2.dir, "backup.xml");
            await writeFile(
              xmlPath,
              pullBackupXml({
                tcp: { host: ns.hostAddress, port: p, tls: true },
                disks: [{ target: "vda", backup: true, scratchPath: join(vm2.dir, "scratch.qcow2") }],
              }),
            );
            await vm2.virsh(["backup-begin", vm2.name, "--backupxml", xmlPath]);
            return p;
          },
          sig(),
        ),
      sig(),
    );
    try {
      await checkAccess(port, "vda", creds, 4 * MiB, want);
    } finally {
      await vm2.virsh(["domjobabort", vm2.name]).catch(() => undefined);
    }
  });

  it("offline: qemu-nbd on TCP with --tls-creds; only the job's reader gets in", async () => {
    const dir = join(work, "offline");
    await mkdir(dir, { recursive: true });
    const raw = join(dir, "disk.raw");
    const data = randomBytes(8 * MiB);
    await writeFile(raw, data);
    const image = join(dir, "disk.qcow2");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, image]);
    const creds = await minter.mint(
      {
        dir: join(work, "job-offline"),
        serverName: ns.hostAddress,
        readerCertificatePem: reader.fleetCertPem,
        readerName: "mover-1",
      },
      sig(),
    );
    const start = (port: number) =>
      QemuNbdExport.start({
        image,
        format: "qcow2",
        exportName: "vda",
        tcp: { host: ns.hostAddress, port, tlsDir: creds.dir },
        startTimeoutMs: 30_000,
        signal: sig(),
      });
    const e = await withExportPort({ host: ns.hostAddress, ...PORTS }, start, sig());
    cleanups.push(() => e.stop());
    expect(e.tcp?.host).toBe(ns.hostAddress);
    await checkAccess(e.tcp!.port, "vda", creds, 8 * MiB, sha(data));
    // A second qemu-nbd on the same port fails with the words withExportPort retries on.
    const clash = await start(e.tcp!.port).catch((err: Error) => err);
    expect(clash).toBeInstanceOf(Error);
    expect((clash as Error).message).toMatch(ADDRESS_IN_USE);
    await e.stop();
  });

  it("TLS cost: 256 MiB through qemu-nbd, plaintext unix socket vs TCP+TLS", async () => {
    const dir = join(work, "cost");
    await mkdir(dir, { recursive: true });
    const image = join(dir, "big.raw");
    const fh = await open(image, "w");
    for (let i = 0; i < 256; i++) await fh.write(randomBytes(MiB));
    await fh.close();
    const creds = await minter.mint(
      {
        dir: join(work, "job-cost"),
        serverName: ns.hostAddress,
        readerCertificatePem: reader.fleetCertPem,
        readerName: "mover-1",
      },
      sig(),
    );
    const results: Record<string, { seconds: number; clientCpu: number; serverCpu: number; hash: string }> =
      {};
    for (const mode of ["unix", "tls"] as const) {
      const e = await QemuNbdExport.start({
        image,
        format: "raw",
        exportName: "big",
        ...(mode === "unix"
          ? { socketPath: join(dir, "big.sock") }
          : { tcp: { host: ns.hostAddress, port: PORTS.max, tlsDir: creds.dir } }),
        startTimeoutMs: 30_000,
        signal: sig(),
      });
      try {
        const client = await NbdClient.connect({
          target:
            mode === "unix" ? { path: join(dir, "big.sock") } : { host: ns.hostAddress, port: PORTS.max },
          exportName: "big",
          ...(mode === "tls" ? { tls: clients(creds).reader! } : {}),
          signal: sig(),
        });
        const h = createHash("sha256");
        const cpu0 = process.cpuUsage();
        const srv0 = await cpuSeconds(e.pid!);
        const t0 = process.hrtime.bigint();
        // 8 requests of 1 MiB in flight, hashed in order.
        for (let off = 0; off < 256 * MiB; off += 8 * MiB) {
          const bufs = await Promise.all(
            Array.from({ length: 8 }, (_, i) => client.read(off + i * MiB, MiB, { signal: sig() })),
          );
          for (const b of bufs) h.update(b);
        }
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const cpu = process.cpuUsage(cpu0);
        results[mode] = {
          seconds,
          clientCpu: (cpu.user + cpu.system) / 1e6,
          serverCpu: (await cpuSeconds(e.pid!)) - srv0,
          hash: h.digest("hex"),
        };
        await client.close();
      } finally {
        await e.stop();
      }
    }
    expect(results.tls!.hash).toBe(results.unix!.hash);
    expect(results.unix!.hash).toBe(sha(await readFile(image)));
    const line = (m: string) => {
      const r = results[m]!;
      return `${m}: ${r.seconds.toFixed(2)} s (${(256 / r.seconds).toFixed(0)} MiB/s), client CPU ${r.clientCpu.toFixed(2)} s, qemu-nbd CPU ${r.serverCpu.toFixed(2)} s`;
    };
    console.log(`[transferTls] 256 MiB read: ${line("unix")} | ${line("tls")}`);
  });
});

/** User + system CPU seconds of a process so far (from /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const hz = Number((await run("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  return (Number(f[11]) + Number(f[12])) / hz;
}
