import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../../coordinator/src/pki/CertificateAuthority.js";
import { verifiedPeerCommonName } from "../../../shared/src/grpc/peerIdentityInterceptor.js";
import { createKeyAndCsr } from "../../../shared/src/pki/createKeyAndCsr.js";

// Real openssl: the CA, CSR signing, and the per-call certificate check the coordinator relies on.
describe("certificate authority", () => {
  const dir = mkdtempSync(join(tmpdir(), "cairn-ca-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const signal = () => AbortSignal.timeout(30_000);

  it("issues client certificates with the CN it chooses, which verify against it and not against another CA", async () => {
    const ca = await CertificateAuthority.init(join(dir, "ca"), { commonName: "fleet", signal: signal() });
    const other = await CertificateAuthority.init(join(dir, "other"), {
      commonName: "other",
      signal: signal(),
    });
    const { csrPem } = await createKeyAndCsr({ commonName: "i-claim-to-be-root", signal: signal() });
    const pem = await ca.signCsr(csrPem, {
      commonName: "kvm-7",
      usage: "client",
      days: 30,
      signal: signal(),
    });
    const cert = new X509Certificate(pem);
    expect(cert.subject).toBe("CN=kvm-7");
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(verifiedPeerCommonName(cert.raw, new X509Certificate(ca.caCertPem))).toBe("kvm-7");
    expect(verifiedPeerCommonName(cert.raw, new X509Certificate(other.caCertPem))).toBeUndefined();
    // A server-only certificate is not a client identity.
    const server = await ca.signCsr(csrPem, {
      commonName: "kvm-7",
      usage: "server",
      days: 30,
      signal: signal(),
    });
    expect(
      verifiedPeerCommonName(new X509Certificate(server).raw, new X509Certificate(ca.caCertPem)),
    ).toBeUndefined();
    // Expired (as seen from the future) is refused.
    expect(
      verifiedPeerCommonName(
        cert.raw,
        new X509Certificate(ca.caCertPem),
        new Date(Date.now() + 40 * 86400_000),
      ),
    ).toBeUndefined();
  });

  it("never replaces an existing CA, names a missing one, and refuses malformed CSRs or names", async () => {
    await expect(
      CertificateAuthority.init(join(dir, "ca"), { commonName: "again", signal: signal() }),
    ).rejects.toMatchObject({
      code: "already-exists",
    });
    await expect(CertificateAuthority.load(join(dir, "none"), signal())).rejects.toMatchObject({
      code: "not-found",
      hint: expect.stringMatching(/cairn ca init/),
    });
    const ca = await CertificateAuthority.load(join(dir, "ca"), signal());
    await expect(
      ca.signCsr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", {
        commonName: "x",
        usage: "client",
        days: 1,
        signal: signal(),
      }),
    ).rejects.toMatchObject({ code: "invalid-argument" });
    const { csrPem } = await createKeyAndCsr({ commonName: "x", signal: signal() });
    await expect(
      ca.signCsr(csrPem, { commonName: "../etc", usage: "client", days: 1, signal: signal() }),
    ).rejects.toMatchObject({
      code: "invalid-argument",
    });
  });
});
