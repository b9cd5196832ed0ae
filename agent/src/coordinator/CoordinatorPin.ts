import { X509Certificate } from "node:crypto";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { notTheCoordinator } from "../../../shared/src/pki/coordinatorIdentity.js";
import { writeCoordinatorPin } from "../../../shared/src/pki/writeIdentity.js";

/**
 * The coordinator this agent trusts: a certificate with the coordinator's markers whose public key
 * is the one pinned at enrollment (docs/architecture.md "Identity"). An agent enrolled before pins
 * existed has none: it accepts the markers alone until its first registration with the coordinator
 * it dials pins that coordinator's key (pinIfUnpinned).
 */
export class CoordinatorPin {
  private pinned: X509Certificate | undefined;

  constructor(
    private readonly identityDir: string,
    pinnedPem: string | undefined,
  ) {
    this.pinned = pinnedPem ? new X509Certificate(pinnedPem) : undefined;
  }

  get isPinned(): boolean {
    return this.pinned !== undefined;
  }

  /** Why `cert` (verified against the fleet CA) may not act as the coordinator; undefined: it may. */
  refuses(cert: X509Certificate): string | undefined {
    return notTheCoordinator(cert, this.pinned);
  }

  /** Pins `certPem` if nothing is pinned yet; true when it did. */
  async pinIfUnpinned(certPem: string): Promise<boolean> {
    if (this.pinned) return false;
    const cert = new X509Certificate(certPem);
    const why = notTheCoordinator(cert, undefined);
    if (why) throw new Error(why);
    await writeCoordinatorPin(this.identityDir, certPem);
    this.pinned = cert;
    return true;
  }
}

/**
 * A TLS checkServerIdentity for dialling the coordinator: the usual name check, then the
 * coordinator's markers and (with a pin) its key, so that no host certificate, which also names
 * localhost, can pose as the coordinator. `seen` gets the accepted certificate (PEM).
 */
export function coordinatorServerCheck(
  refuses: (cert: X509Certificate) => string | undefined,
  seen?: (certPem: string) => void,
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (hostname, peer) => {
    const nameError = checkServerIdentity(hostname, peer);
    if (nameError) return nameError;
    const cert = new X509Certificate(peer.raw);
    const why = refuses(cert);
    if (why) return new Error(`the server at ${hostname} is not this fleet's coordinator: ${why}`);
    seen?.(cert.toString());
    return undefined;
  };
}
