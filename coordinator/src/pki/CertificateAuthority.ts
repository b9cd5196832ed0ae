import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import { runOpenssl } from "../../../shared/src/pki/runOpenssl.js";

const EC = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const HOST = /^[A-Za-z0-9][A-Za-z0-9.\-_]{0,62}$/;

/**
 * The fleet's CA (openssl underneath, argument arrays only). It signs the coordinator's
 * certificate and each agent's CSR at enrollment, choosing the CN (the host id) itself.
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

  /** A key pair and certificate for the coordinator (server + client auth). */
  async issueServerCertificate(opts: {
    commonName: string;
    dnsNames: string[];
    ipAddresses: string[];
    signal: AbortSignal;
  }): Promise<{ certPem: string; keyPem: string }> {
    const tmp = await mkdtemp(join(this.dir, ".issue-"));
    try {
      await runOpenssl(["genpkey", ...EC, "-out", join(tmp, "key.pem")], opts.signal);
      const csrPem = await runOpenssl(
        ["req", "-new", "-key", join(tmp, "key.pem"), "-subj", "/CN=csr"],
        opts.signal,
      );
      const certPem = await this.signCsr(csrPem, {
        commonName: opts.commonName,
        usage: "client+server",
        dnsNames: opts.dnsNames,
        ipAddresses: opts.ipAddresses,
        days: 825,
        signal: opts.signal,
      });
      return { certPem, keyPem: await readFile(join(tmp, "key.pem"), "utf8") };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Signs a CSR after checking its self-signature; the CSR's own subject is ignored. */
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
      const eku =
        opts.usage === "client"
          ? "clientAuth"
          : opts.usage === "server"
            ? "serverAuth"
            : "serverAuth,clientAuth";
      const san = [
        ...(opts.dnsNames ?? []).map((d) => `DNS:${d}`),
        ...(opts.ipAddresses ?? []).map((i) => `IP:${i}`),
      ];
      for (const s of san)
        if (!/^(DNS|IP):[A-Za-z0-9.:\-_]+$/.test(s))
          throw new CairnError("invalid-argument", `invalid subject alternative name ${s}`);
      await writeFile(
        join(tmp, "leaf.ext"),
        `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${eku}\nauthorityKeyIdentifier=keyid\n${san.length ? `subjectAltName=${san.join(",")}\n` : ""}`,
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
          `/CN=${opts.commonName}`,
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
