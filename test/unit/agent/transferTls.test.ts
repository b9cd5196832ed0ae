import { createPublicKey, X509Certificate } from "node:crypto";
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withExportPort } from "../../../agent/src/transfer/exportPort.js";
import { FileLibvirtTlsDir, parseLibvirtConf } from "../../../agent/src/transfer/FileLibvirtTlsDir.js";
import type { JobCredentials } from "../../../agent/src/transfer/JobTls.js";
import { OpensslJobTlsMinter, subjectAltName } from "../../../agent/src/transfer/OpensslJobTlsMinter.js";
import { createKeyAndCsr } from "../../../shared/src/pki/createKeyAndCsr.js";
import { runOpenssl } from "../../../shared/src/pki/runOpenssl.js";

let tmp: string;
const signal = () => AbortSignal.timeout(15_000);

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "cairn-tls-unit-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A reader's fleet identity: its key and a certificate for it (self-signed stands in for the fleet CA). */
async function readerIdentity(): Promise<{ keyPem: string; certPem: string }> {
  const { keyPem, csrPem } = await createKeyAndCsr({ commonName: "mover-1", signal: signal() });
  const dir = await mkdtemp(join(tmp, "id-"));
  await writeFile(join(dir, "key.pem"), keyPem);
  await writeFile(join(dir, "csr.pem"), csrPem);
  const certPem = await runOpenssl(
    ["x509", "-req", "-in", join(dir, "csr.pem"), "-key", join(dir, "key.pem"), "-days", "1"],
    signal(),
  );
  return { keyPem, certPem };
}

describe("OpensslJobTlsMinter", () => {
  it("issues the reader's certificate for its fleet public key, a server certificate for the address, and drops the CA key", async () => {
    const reader = await readerIdentity();
    const dir = join(tmp, "job-1");
    const c = await new OpensslJobTlsMinter().mint(
      { dir, serverName: "10.222.1.1", readerCertificatePem: reader.certPem, readerName: "mover-1" },
      signal(),
    );
    const ca = new X509Certificate(c.caPem);
    const server = new X509Certificate(c.serverCertPem);
    const client = new X509Certificate(c.clientCertPem);
    expect(ca.ca).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(server.checkIP("10.222.1.1")).toBe("10.222.1.1");
    expect(client.subject).toContain("CN=mover-1");
    const spki = (k: ReturnType<typeof createPublicKey>) =>
      k.export({ type: "spki", format: "der" }).toString("hex");
    // The reader's own key opens the export: the certificate carries exactly its public key.
    expect(spki(client.publicKey)).toBe(spki(createPublicKey(reader.keyPem)));
    expect(spki(server.publicKey)).toBe(spki(createPublicKey(c.serverKeyPem)));
    expect((await readdir(dir)).sort()).toEqual([
      "ca-cert.pem",
      "client-cert.pem",
      // Without it QEMU generates DH parameters when it loads the credentials (~250 ms).
      "dh-params.pem",
      "server-cert.pem",
      "server-key.pem",
    ]);
    expect((await stat(join(dir, "server-key.pem"))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(c.dir).toBe(dir);
    expect(c.serverName).toBe("10.222.1.1");
  });

  it("takes a DNS name for the server certificate", async () => {
    const reader = await readerIdentity();
    const c = await new OpensslJobTlsMinter().mint(
      {
        dir: join(tmp, "job-2"),
        serverName: "kvm-01.example",
        readerCertificatePem: reader.certPem,
        readerName: "m",
      },
      signal(),
    );
    expect(new X509Certificate(c.serverCertPem).checkHost("kvm-01.example")).toBe("kvm-01.example");
  });

  it("refuses a reader certificate that is not one parsable certificate, and a bad address", async () => {
    const minter = new OpensslJobTlsMinter();
    const reader = await readerIdentity();
    const mint = (readerCertificatePem: string, serverName = "10.0.0.1") =>
      minter.mint({ dir: join(tmp, "job-bad"), serverName, readerCertificatePem, readerName: "m" }, signal());
    await expect(mint("not a certificate")).rejects.toMatchObject({ code: "invalid-argument" });
    await expect(mint(reader.certPem + reader.certPem)).rejects.toMatchObject({ code: "invalid-argument" });
    await expect(
      mint("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    ).rejects.toMatchObject({ code: "invalid-argument", message: /cannot be parsed/ });
    await expect(mint(reader.certPem, "a b/c")).rejects.toMatchObject({ code: "invalid-argument" });
    expect(subjectAltName("fd00::1")).toBe("IP:fd00::1");
  });
});

describe("FileLibvirtTlsDir", () => {
  const creds = (n: string): JobCredentials => ({
    caPem: `ca ${n}`,
    serverCertPem: `cert ${n}`,
    serverKeyPem: `key ${n}`,
    serverName: "h",
    clientCertPem: "",
    dir: "/nonexistent",
  });

  it("parses libvirt's scalar settings", () => {
    const m = parseLibvirtConf(
      '# c\nbackup_tls_x509_cert_dir = "/a b"  # why\n#backup_tls_x509_verify = 0\nbackup_tls_x509_verify=1\nlist = [ "a" ]\nbackup_tls_x509_verify = 0\n',
    );
    expect(m.get("backup_tls_x509_cert_dir")).toBe("/a b");
    // The first entry wins, as in libvirt.
    expect(m.get("backup_tls_x509_verify")).toBe(1);
    expect(m.has("list")).toBe(false);
  });

  it("check() names the missing or wrong setting", async () => {
    const conf = join(tmp, "qemu.conf");
    const dir = join(tmp, "libvirt-tls");
    const t = new FileLibvirtTlsDir({ dir, qemuConfPath: conf, daemonPidFile: join(tmp, "none.pid") });
    await writeFile(conf, '#backup_tls_x509_cert_dir = "/etc/pki/libvirt-backup"\n');
    await expect(t.check(signal())).rejects.toMatchObject({
      code: "failed-precondition",
      message: /backup_tls_x509_cert_dir.*no setting/,
    });
    await writeFile(conf, `backup_tls_x509_cert_dir = "${dir}"\nbackup_tls_x509_verify = 0\n`);
    await expect(t.check(signal())).rejects.toMatchObject({ message: /backup_tls_x509_verify = 1/ });
    // libvirt's fallback: default_tls_x509_verify decides when the backup setting is absent.
    await writeFile(conf, `backup_tls_x509_cert_dir = "${dir}"\ndefault_tls_x509_verify = 0\n`);
    await expect(t.check(signal())).rejects.toMatchObject({ message: /backup_tls_x509_verify/ });
    await writeFile(conf, `backup_tls_x509_cert_dir = "${dir}/"\n`);
    await expect(t.check(signal())).resolves.toBeUndefined();
    await writeFile(conf, `backup_tls_x509_cert_dir = "${dir}"\nbackup_tls_x509_verify = 1\n`);
    await expect(t.check(signal())).resolves.toBeUndefined();
    // A qemu.conf newer than the daemon (this process stands in for it) was not read by it yet.
    const pidFile = join(tmp, "daemon.pid");
    await writeFile(pidFile, String(process.pid));
    const fresh = new FileLibvirtTlsDir({ dir, qemuConfPath: conf, daemonPidFile: pidFile });
    await expect(fresh.check(signal())).rejects.toMatchObject({
      message: /changed after libvirt's daemon started/,
    });
    await utimes(conf, new Date(0), new Date(0));
    await expect(fresh.check(signal())).resolves.toBeUndefined();
  });

  it("writes QEMU's files for the duration of fn, one job at a time, and removes them after", async () => {
    const dir = join(tmp, "libvirt-tls-2");
    const t = new FileLibvirtTlsDir({ dir, qemuUser: "root" });
    const seen: string[] = [];
    let inside = 0;
    const job = (n: string, ms: number) =>
      t.withCredentials(
        creds(n),
        async () => {
          inside++;
          expect(inside).toBe(1);
          const { readFile } = await import("node:fs/promises");
          seen.push(`${n}:${await readFile(join(dir, "server-key.pem"), "utf8")}`);
          await new Promise((r) => setTimeout(r, ms));
          inside--;
          return n;
        },
        signal(),
      );
    expect(await Promise.all([job("a", 30), job("b", 5), job("c", 1)])).toEqual(["a", "b", "c"]);
    expect(seen).toEqual(["a:key a", "b:key b", "c:key c"]);
    expect(await readdir(dir)).toEqual([]);
    expect((await stat(dir)).mode & 0o777).toBe(0o711);
    // A job whose signal fires while it waits never runs, and does not block the next one.
    const ac = new AbortController();
    const slow = job("d", 50);
    const aborted = t.withCredentials(creds("e"), async () => "e", ac.signal);
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: "aborted" });
    expect(await Promise.all([slow, job("f", 1)])).toEqual(["d", "f"]);
    // fn failing still removes the files and releases the directory.
    await expect(
      t.withCredentials(creds("g"), async () => Promise.reject(new Error("boom")), signal()),
    ).rejects.toThrow("boom");
    expect(await readdir(dir)).toEqual([]);
    expect(await job("h", 1)).toBe("h");
  });
});

describe("withExportPort", () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => busy.close(() => r())));

  it("skips a busy port and retries when the listener loses a race", async () => {
    const tried: number[] = [];
    const got = await withExportPort(
      { host: "127.0.0.1", min: busyPort, max: busyPort + 2 },
      async (port) => {
        tried.push(port);
        if (tried.length === 1) throw new Error("Failed to bind socket: Address already in use");
        return port;
      },
      signal(),
    );
    expect(tried).not.toContain(busyPort);
    expect(tried.length).toBe(2);
    expect(got).toBe(tried[1]);
  });

  it("fails with resource-exhausted when every port is taken, and passes other errors through", async () => {
    await expect(
      withExportPort({ host: "127.0.0.1", min: busyPort, max: busyPort }, async () => 1, signal()),
    ).rejects.toMatchObject({ code: "resource-exhausted" });
    await expect(
      withExportPort(
        { host: "127.0.0.1", min: busyPort + 1, max: busyPort + 3 },
        async () => Promise.reject(new Error("no such domain")),
        signal(),
      ),
    ).rejects.toThrow("no such domain");
  });
});
