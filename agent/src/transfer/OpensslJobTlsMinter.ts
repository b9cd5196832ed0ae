import { generateKeyPair, X509Certificate } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { runOpenssl } from "../../../shared/src/pki/runOpenssl.js";
import { FFDHE2048_PEM } from "./ffdhe2048.js";
import type { JobCredentials, JobTlsMinter } from "./JobTls.js";

/** The file names QEMU's tls-creds-x509 object reads from its directory (endpoint=server). */
export const QEMU_TLS_FILES = {
  ca: "ca-cert.pem",
  serverCert: "server-cert.pem",
  serverKey: "server-key.pem",
  dhParams: "dh-params.pem",
} as const;

/** Files the minter leaves besides QEMU's: the reader's certificate, for the export_ready message. */
const CLIENT_CERT = "client-cert.pem";

const DNS_RE =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface OpensslJobTlsMinterOptions {
  /** Owner of the job directory and its files: QEMU's user when QEMU must read them. Default: ours. */
  owner?: { uid: number; gid: number };
  /** Validity of every certificate, days. A job's export lives minutes to hours. Default 7. */
  days?: number;
}

/**
 * Makes a job's TLS material with openssl (docs/transfer-paths.md §5): a throwaway EC P-256 CA, a
 * server certificate for the export's address and a client certificate for the public key of the
 * reader's fleet certificate. The CA key is deleted once both are signed, so nothing can issue
 * another certificate for this job; the reader's private key never leaves the reader.
 */
export class OpensslJobTlsMinter implements JobTlsMinter {
  constructor(private readonly opts: OpensslJobTlsMinterOptions = {}) {}

  async mint(
    o: { dir: string; serverName: string; readerCertificatePem: string; readerName: string },
    signal: AbortSignal,
  ): Promise<JobCredentials> {
    const readerPub = readerPublicKey(o.readerCertificatePem);
    const san = subjectAltName(o.serverName);
    const days = String(this.opts.days ?? 7);
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    await chmod(o.dir, 0o700);
    const p = (f: string) => join(o.dir, f);
    const caKey = p("ca-key.pem");
    const ext = p("ext.cnf");
    try {
      // Extensions QEMU's sanity checks (crypto/tlscredsx509.c) and Node's verifier both accept:
      // keyUsage is not critical so an EC key without keyEncipherment passes QEMU's check.
      await writeFile(
        ext,
        [
          "[ca]",
          "basicConstraints = critical, CA:TRUE, pathlen:0",
          "keyUsage = critical, keyCertSign, cRLSign",
          "subjectKeyIdentifier = hash",
          "[server]",
          "basicConstraints = critical, CA:FALSE",
          "keyUsage = digitalSignature, keyEncipherment",
          "extendedKeyUsage = serverAuth",
          `subjectAltName = ${san}`,
          "authorityKeyIdentifier = keyid",
          "[client]",
          "basicConstraints = critical, CA:FALSE",
          "keyUsage = digitalSignature, keyEncipherment",
          "extendedKeyUsage = clientAuth",
          "authorityKeyIdentifier = keyid",
          "",
        ].join("\n"),
        { mode: 0o600 },
      );
      // Both keys in-process (no openssl spawn); the server's public half is what its cert carries.
      const serverKey = p(QEMU_TLS_FILES.serverKey);
      const serverPubPath = p("server-pub.pem");
      const [ca, server] = await Promise.all([ecKeyPair(), ecKeyPair()]);
      await Promise.all([
        writeFile(caKey, ca.privateKey, { mode: 0o600 }),
        writeFile(serverKey, server.privateKey, { mode: 0o600 }),
        writeFile(serverPubPath, server.publicKey, { mode: 0o600 }),
      ]);
      // Self-signed: x509 -new signs with -key when no -CA is given.
      await runOpenssl(
        [
          "x509",
          "-new",
          "-key",
          caKey,
          "-subj",
          `/CN=${cn(`cairn job CA ${o.serverName}`)}`,
          "-days",
          days,
        ].concat(["-sha256", "-extfile", ext, "-extensions", "ca", "-out", p(QEMU_TLS_FILES.ca)]),
        signal,
      );
      // x509 -new refuses -key together with -CA: the subject's key goes in as -force_pubkey.
      const signArgs = [
        "-CA",
        p(QEMU_TLS_FILES.ca),
        "-CAkey",
        caKey,
        "-days",
        days,
        "-sha256",
        "-extfile",
        ext,
      ];
      // The reader's certificate: its fleet public key, our CA's signature (-force_pubkey: no CSR,
      // which only the holder of the private key could sign). Both certificates at once.
      const readerPubPath = p("reader-pub.pem");
      await writeFile(readerPubPath, readerPub, { mode: 0o600 });
      await Promise.all([
        runOpenssl(
          [
            "x509",
            "-new",
            "-force_pubkey",
            serverPubPath,
            "-subj",
            `/CN=${cn(o.serverName)}`,
            ...signArgs,
            "-extensions",
            "server",
            "-out",
            p(QEMU_TLS_FILES.serverCert),
          ],
          signal,
        ),
        runOpenssl(
          [
            "x509",
            "-new",
            "-force_pubkey",
            readerPubPath,
            "-subj",
            `/CN=${cn(o.readerName)}`,
            ...signArgs,
            "-extensions",
            "client",
            "-out",
            p(CLIENT_CERT),
          ],
          signal,
        ),
      ]);
    } finally {
      // The CA key must not outlive signing: nothing else may ever be issued under this CA.
      await rm(caKey, { force: true });
      await rm(ext, { force: true });
      for (const f of ["reader-pub.pem", "server-pub.pem"]) await rm(p(f), { force: true });
    }
    const [caPem, serverCertPem, serverKeyPem, clientCertPem] = await Promise.all(
      [QEMU_TLS_FILES.ca, QEMU_TLS_FILES.serverCert, QEMU_TLS_FILES.serverKey, CLIENT_CERT].map((f) =>
        readFile(p(f), "utf8"),
      ),
    );
    await chmod(p(QEMU_TLS_FILES.serverKey), 0o600);
    await writeFile(p(QEMU_TLS_FILES.dhParams), FFDHE2048_PEM, { mode: 0o644 });
    const owner = this.opts.owner;
    if (owner) {
      await chown(o.dir, owner.uid, owner.gid);
      for (const f of [...Object.values(QEMU_TLS_FILES), CLIENT_CERT])
        await chown(p(f), owner.uid, owner.gid);
    }
    return {
      caPem: caPem as string,
      serverCertPem: serverCertPem as string,
      serverKeyPem: serverKeyPem as string,
      serverName: o.serverName,
      clientCertPem: clientCertPem as string,
      dir: o.dir,
    };
  }
}

/** The SPKI (PEM) of the reader's certificate; "invalid-argument" when it is not one certificate. */
export function readerPublicKey(pem: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
  if (blocks !== 1) {
    throw new CairnError(
      "invalid-argument",
      `the reader's certificate must be exactly one PEM certificate (found ${blocks})`,
    );
  }
  try {
    const pub = new X509Certificate(pem).publicKey;
    return pub.export({ type: "spki", format: "pem" }).toString();
  } catch (e) {
    throw new CairnError(
      "invalid-argument",
      `the reader's certificate cannot be parsed: ${(e as Error).message}`,
    );
  }
}

/** openssl's extension syntax for the export's address: an IP literal or a DNS name. */
export function subjectAltName(serverName: string): string {
  if (isIP(serverName)) return `IP:${serverName}`;
  if (DNS_RE.test(serverName)) return `DNS:${serverName}`;
  throw new CairnError(
    "invalid-argument",
    `export address ${JSON.stringify(serverName)} is neither an IP address nor a DNS name`,
  );
}

/** A subject CN safe for openssl's -subj syntax ('/' and '\\' separate or escape fields there). */
function cn(s: string): string {
  return s.replace(/[/\\+=,]/g, "_").slice(0, 64) || "_";
}

/** An EC P-256 key pair as PEM (PKCS#8 private, SPKI public), what `openssl genpkey` would write. */
function ecKeyPair(): Promise<{ privateKey: string; publicKey: string }> {
  return new Promise((resolve, reject) =>
    generateKeyPair(
      "ec",
      {
        namedCurve: "prime256v1",
        privateKeyEncoding: { type: "pkcs8", format: "pem" },
        publicKeyEncoding: { type: "spki", format: "pem" },
      },
      (err, publicKey, privateKey) => (err ? reject(err) : resolve({ privateKey, publicKey })),
    ),
  );
}
