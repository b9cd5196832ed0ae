import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import {
  COORDINATOR_CN,
  COORDINATOR_EKU_OID,
  COORDINATOR_OU,
  isReservedHostId,
  reservedHostId,
} from "../../../shared/src/pki/coordinatorIdentity.js";
import { runOpenssl } from "../../../shared/src/pki/runOpenssl.js";

const EC = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const HOST = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;

/**
 * The fleet's CA (openssl underneath, argument arrays only). It signs the coordinator's
 * certificate (issueCoordinatorCertificate, the only path that adds the coordinator's markers) and
 * each agent's CSR at enrollment (signCsr: CN = the host id it chooses, never a reserved one).
 */
export class CertificateAuthority {
  private constructor(
    readonly dir: string,
    readonly caCertPem: string,
  ) {}

  private get keyPath(): string {
    return join(this.dir, "ca-key.pem");
  }
  private get certPath(): string {
    return join(this.dir, "ca-cert.pem");
  }

  static async init(
    dir: string,
    opts: { commonName: string; signal: AbortSignal },
  ): Promise<CertificateAuthority> {
    if (existsSync(join(dir, "ca-key.pem")) || existsSync(join(dir, "ca-cert.pem")))
      throw new CairnError("already-exists", `a CA already exists in ${dir}; it is never replaced`, {
        hint: "agents trust that CA: keep it, or move the directory away deliberately to start a new fleet",
      });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = await mkdtemp(join(dir, ".init-"));
    try {
      await runOpenssl(["genpkey", ...EC, "-out", join(tmp, "ca-key.pem")], opts.signal);
      // A private config: no dependence on (or surprise from) the system's openssl.cnf.
      await writeFile(
        join(tmp, "ca.cnf"),
        [
          "[req]",
          "distinguished_name = dn",
          "x509_extensions = v3_ca",
          "prompt = no",
          "[dn]",
          `CN = ${opts.commonName.replace(/[\n=]/g, " ")}`,
          "[v3_ca]",
          "basicConstraints = critical,CA:TRUE,pathlen:0",
          "keyUsage = critical,keyCertSign,cRLSign",
          "subjectKeyIdentifier = hash",
          "authorityKeyIdentifier = keyid:always",
          "",
        ].join("\n"),
      );
      await runOpenssl(
        [
          "req",
          "-new",
          "-x509",
          "-config",
          join(tmp, "ca.cnf"),
          "-key",
          join(tmp, "ca-key.pem"),
          "-days",
          "3650",
          "-set_serial",
          `0x${randomBytes(16).toString("hex")}`,
          "-out",
          join(tmp, "ca-cert.pem"),
        ],
        opts.signal,
      );
      await rename(join(tmp, "ca-key.pem"), join(dir, "ca-key.pem"));
      await rename(join(tmp, "ca-cert.pem"), join(dir, "ca-cert.pem"));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return CertificateAuthority.load(dir, opts.signal);
  }

  static async load(dir: string, _signal: AbortSignal): Promise<CertificateAuthority> {
    if (!existsSync(join(dir, "ca-key.pem")) || !existsSync(join(dir, "ca-cert.pem")))
      throw new CairnError("not-found", `no CA in ${dir}`, {
        hint: "run `cairn ca init` on the coordinator host",
      });
    return new CertificateAuthority(dir, await readFile(join(dir, "ca-cert.pem"), "utf8"));
  }

  /**
   * The coordinator's certificate (server + client auth), the only one with the coordinator's
   * markers (OU and private EKU, shared/src/pki/coordinatorIdentity.ts). With `keyPem` it
   * re-issues for the existing key, which keeps agents' pins valid.
   */
  async issueCoordinatorCertificate(opts: {
    dnsNames: string[];
    ipAddresses: string[];
    keyPem?: string;
    signal: AbortSignal;
  }): Promise<{ certPem: string; keyPem: string }> {
    return this.withNewCsr(opts.keyPem, opts.signal, (csrPem) =>
      this.sign(csrPem, {
        subject: `/OU=${COORDINATOR_OU}/CN=${COORDINATOR_CN}`,
        eku: `serverAuth,clientAuth,${COORDINATOR_EKU_OID}`,
        dnsNames: opts.dnsNames,
        ipAddresses: opts.ipAddresses,
        days: 825,
        signal: opts.signal,
      }),
    );
  }

  /** A key pair and a host certificate (signCsr's rules) made here: benchmarks' simulated agents. */
  async issueHostKeyAndCertificate(opts: {
    hostId: string;
    dnsNames: string[];
    ipAddresses: string[];
    signal: AbortSignal;
  }): Promise<{ certPem: string; keyPem: string }> {
    return this.withNewCsr(undefined, opts.signal, (csrPem) =>
      this.signCsr(csrPem, {
        commonName: opts.hostId,
        usage: "client+server",
        dnsNames: opts.dnsNames,
        ipAddresses: opts.ipAddresses,
        days: 825,
        signal: opts.signal,
      }),
    );
  }

  private async withNewCsr(
    keyPem: string | undefined,
    signal: AbortSignal,
    sign: (csrPem: string) => Promise<string>,
  ): Promise<{ certPem: string; keyPem: string }> {
    const tmp = await mkdtemp(join(this.dir, ".issue-"));
    try {
      const key = join(tmp, "key.pem");
      if (keyPem) await writeFile(key, keyPem, { mode: 0o600 });
      else await runOpenssl(["genpkey", ...EC, "-out", key], signal);
      const csrPem = await runOpenssl(["req", "-new", "-key", key, "-subj", "/CN=csr"], signal);
      return { certPem: await sign(csrPem), keyPem: await readFile(key, "utf8") };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /**
   * Signs a host's CSR after checking its self-signature. The CSR's own subject and extensions are
   * ignored (openssl x509 -req copies none): the certificate says CN=<host id> and nothing more.
   */
  async signCsr(
    csrPem: string,
    opts: {
      commonName: string;
      usage: "client" | "server" | "client+server";
      dnsNames?: string[];
      ipAddresses?: string[];
      days: number;
      signal: AbortSignal;
    },
  ): Promise<string> {
    if (!HOST.test(opts.commonName))
      throw new CairnError(
        "invalid-argument",
        `certificate name ${JSON.stringify(opts.commonName)} is not a valid host id`,
      );
    if (isReservedHostId(opts.commonName)) throw reservedHostId(opts.commonName);
    const eku =
      opts.usage === "client"
        ? "clientAuth"
        : opts.usage === "server"
          ? "serverAuth"
          : "serverAuth,clientAuth";
    // The subject is the CN alone: a host certificate never carries the coordinator's OU or EKU.
    return this.sign(csrPem, {
      subject: `/CN=${opts.commonName}`,
      eku,
      dnsNames: opts.dnsNames ?? [],
      ipAddresses: opts.ipAddresses ?? [],
      days: opts.days,
      signal: opts.signal,
    });
  }

  private async sign(
    csrPem: string,
    opts: {
      subject: string;
      eku: string;
      dnsNames: string[];
      ipAddresses: string[];
      days: number;
      signal: AbortSignal;
    },
  ): Promise<string> {
    const tmp = await mkdtemp(join(this.dir, ".sign-"));
    try {
      const csr = join(tmp, "req.csr");
      await writeFile(csr, csrPem);
      try {
        await runOpenssl(["req", "-in", csr, "-noout", "-verify"], opts.signal);
      } catch (e) {
        throw new CairnError(
          "invalid-argument",
          "the certificate signing request is malformed or its signature does not verify",
          { cause: e },
        );
      }
      const san = [...opts.dnsNames.map((d) => `DNS:${d}`), ...opts.ipAddresses.map((i) => `IP:${i}`)];
      for (const s of san)
        if (!/^(DNS|IP):[A-Za-z0-9.:\-_]+$/.test(s))
          throw new CairnError("invalid-argument", `invalid subject alternative name ${s}`);
      await writeFile(
        join(tmp, "leaf.ext"),
        `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${opts.eku}\nauthorityKeyIdentifier=keyid\n${san.length ? `subjectAltName=${san.join(",")}\n` : ""}`,
      );
      return await runOpenssl(
        [
          "x509",
          "-req",
          "-in",
          csr,
          "-CA",
          this.certPath,
          "-CAkey",
          this.keyPath,
          "-set_serial",
          `0x${randomBytes(16).toString("hex")}`,
          "-days",
          String(opts.days),
          "-subj",
          opts.subject,
          "-extfile",
          join(tmp, "leaf.ext"),
        ],
        opts.signal,
      );
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
