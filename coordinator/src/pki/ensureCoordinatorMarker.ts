import { X509Certificate } from "node:crypto";
import { rename, writeFile } from "node:fs/promises";
import { hasCoordinatorMarker } from "../../../shared/src/pki/coordinatorIdentity.js";
import type { CertificateAuthority } from "./CertificateAuthority.js";

/**
 * A coordinator set up before certificates carried the coordinator's markers gets a new
 * certificate for the same key and names (agents that pinned the key keep trusting it). Returns
 * the certificate to serve with, and whether it was re-issued (the caller logs and audits that).
 */
export async function ensureCoordinatorMarker(
  ca: CertificateAuthority,
  paths: { cert: string },
  current: { certPem: string; keyPem: string },
  signal: AbortSignal,
): Promise<{ certPem: string; reissued: boolean }> {
  if (hasCoordinatorMarker(current.certPem)) return { certPem: current.certPem, reissued: false };
  const names = (new X509Certificate(current.certPem).subjectAltName ?? "").split(", ").filter(Boolean);
  const { certPem } = await ca.issueCoordinatorCertificate({
    dnsNames: names.filter((n) => n.startsWith("DNS:")).map((n) => n.slice(4)),
    ipAddresses: names.filter((n) => n.startsWith("IP Address:")).map((n) => n.slice(11)),
    keyPem: current.keyPem,
    signal,
  });
  await writeFile(`${paths.cert}.tmp`, certPem, { mode: 0o644 });
  await rename(`${paths.cert}.tmp`, paths.cert);
  return { certPem, reissued: true };
}
