import { X509Certificate } from "node:crypto";
import { CairnError } from "../errors/CairnError.js";

/**
 * The coordinator's reserved identity (docs/architecture.md "Identity"). Only the coordinator's
 * certificate carries both markers; the CA's host-certificate path can never add them.
 */
export const COORDINATOR_CN = "cairn-coordinator";
export const COORDINATOR_OU = "cairn-coordinator";
/**
 * Cairn's private extended key usage for "is the coordinator": a UUID-derived OID (ITU-T X.667,
 * arc 2.25), so no registration is needed and no other issuer uses it by accident.
 */
export const COORDINATOR_EKU_OID = "2.25.259140776008633398005744779080060867656";

/** Host ids enrollment refuses: the coordinator's name in any letter case. */
export function isReservedHostId(id: string): boolean {
  return id.toLowerCase() === COORDINATOR_CN;
}

/** The error for a reserved host id, wherever one is asked for. */
export function reservedHostId(id: string): CairnError {
  return new CairnError("invalid-argument", `host id ${JSON.stringify(id)} is reserved for the coordinator`, {
    hint: "enroll the host under another id (--hostname, or the id given to `cairn hosts enroll-token`)",
  });
}

function asCert(cert: X509Certificate | string): X509Certificate {
  return typeof cert === "string" ? new X509Certificate(cert) : cert;
}

/** Whether a certificate carries the coordinator's markers (the OU and the private EKU). */
export function hasCoordinatorMarker(cert: X509Certificate | string): boolean {
  const c = asCert(cert);
  const ous = c.subject
    .split("\n")
    .filter((l) => l.startsWith("OU="))
    .map((l) => l.slice(3).trim());
  return ous.includes(COORDINATOR_OU) && (c.keyUsage ?? []).includes(COORDINATOR_EKU_OID);
}

/** The certificate's public key as SPKI DER: what a pin compares. */
export function publicKeyDer(cert: X509Certificate | string): Buffer {
  return asCert(cert).publicKey.export({ type: "spki", format: "der" }) as Buffer;
}

export function samePublicKey(a: X509Certificate | string, b: X509Certificate | string): boolean {
  return publicKeyDer(a).equals(publicKeyDer(b));
}

/**
 * Why `cert` (already verified against the fleet CA) is not the coordinator this host pinned, or
 * undefined when it is. Without a pin (an agent enrolled before pins existed) the markers decide.
 */
export function notTheCoordinator(
  cert: X509Certificate,
  pinned: X509Certificate | undefined,
): string | undefined {
  if (!hasCoordinatorMarker(cert))
    return `the certificate of ${cert.subject.replace(/\n/g, ",")} is not the coordinator's (no coordinator marker)`;
  if (pinned && !samePublicKey(cert, pinned))
    return "the certificate carries the coordinator marker but not the coordinator key this host pinned at enrollment";
  return undefined;
}
