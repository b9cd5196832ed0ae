import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "./processes.js";

export interface TestPki {
  dir: string;
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
}

/**
 * A throwaway CA plus server and client certificates in `dir`, named the way qemu's
 * tls-creds-x509 (ca-cert.pem, server-cert.pem, server-key.pem) and libnbd's
 * tls-certificates (ca-cert.pem, client-cert.pem, client-key.pem) expect them.
 * Server certificate names: localhost and 127.0.0.1. GnuTLS insists on proper key usages.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const p = (f: string) => join(dir, f);
  await writeFile(
    p("ca.ext"),
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
  );
  await writeFile(
    p("server.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
      "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
  await writeFile(
    p("client.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
      "extendedKeyUsage=clientAuth\n",
  );
  const key = (f: string) =>
    run("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p(f)]);
  await Promise.all([key("ca-key.pem"), key("server-key.pem"), key("client-key.pem")]);
  await run("openssl", [
    "req",
    "-new",
    "-key",
    p("ca-key.pem"),
    "-subj",
    "/CN=Cairn test CA",
    "-out",
    p("ca.csr"),
  ]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    p("ca.csr"),
    "-signkey",
    p("ca-key.pem"),
    "-days",
    "2",
    "-extfile",
    p("ca.ext"),
    "-out",
    p("ca-cert.pem"),
  ]);
  for (const who of ["server", "client"]) {
    await run("openssl", [
      "req",
      "-new",
      "-key",
      p(`${who}-key.pem`),
      "-subj",
      `/CN=${who === "server" ? "localhost" : "cairn-client"}`,
      "-out",
      p(`${who}.csr`),
    ]);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      p(`${who}.csr`),
      "-CA",
      p("ca-cert.pem"),
      "-CAkey",
      p("ca-key.pem"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      p(`${who}.ext`),
      "-out",
      p(`${who}-cert.pem`),
    ]);
  }
  const [ca, serverCert, serverKey, clientCert, clientKey] = await Promise.all(
    ["ca-cert.pem", "server-cert.pem", "server-key.pem", "client-cert.pem", "client-key.pem"].map((f) =>
      readFile(p(f)),
    ),
  );
  return {
    dir,
    ca: ca!,
    serverCert: serverCert!,
    serverKey: serverKey!,
    clientCert: clientCert!,
    clientKey: clientKey!,
  };
}
