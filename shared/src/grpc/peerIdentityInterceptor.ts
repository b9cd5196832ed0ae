import { X509Certificate } from "node:crypto";
import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  ServerListenerBuilder,
} from "@grpc/grpc-js";

/** Metadata key carrying the verified client certificate's CN to handlers. Never trusted from the wire. */
export const PEER_CN_HEADER = "x-cairn-peer-cn";
/** Metadata key carrying a server's verdict on the verified peer ("ok" or why not). Never trusted from the wire. */
export const PEER_VERDICT_HEADER = "x-cairn-peer-verdict";

/**
 * A client certificate the fleet CA issued, valid now and for client auth, or undefined. The
 * coordinator's TLS server accepts connections without a client certificate (agents call Enroll
 * before they have one), so TLS does not reject foreign certificates by itself: they are checked
 * here against the CA.
 */
export function verifiedPeerCertificate(
  raw: Buffer | undefined,
  ca: X509Certificate,
  now = new Date(),
): X509Certificate | undefined {
  if (!raw?.length) return undefined;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(raw);
  } catch {
    return undefined;
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return undefined;
  if (new Date(cert.validFrom) > now || new Date(cert.validTo) < now) return undefined;
  if (cert.keyUsage && !cert.keyUsage.includes("1.3.6.1.5.5.7.3.2")) return undefined; // clientAuth EKU
  return cert;
}

/** The CN of a verified client certificate (verifiedPeerCertificate), or undefined. */
export function verifiedPeerCommonName(
  raw: Buffer | undefined,
  ca: X509Certificate,
  now = new Date(),
): string | undefined {
  const cert = verifiedPeerCertificate(raw, ca, now);
  return cert && commonNameOf(cert);
}

function commonNameOf(cert: X509Certificate): string | undefined {
  const m = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject);
  return m?.[1]?.trim();
}

/**
 * grpc-js server interceptor: strips any client-sent PEER_CN_HEADER and PEER_VERDICT_HEADER and,
 * when the connection presented a certificate the CA issued (see verifiedPeerCertificate), sets
 * the first to that certificate's CN and the second to `judge`'s verdict on it.
 */
export function peerIdentityInterceptor(
  caCertPem: string,
  opts: {
    /**
     * Judges each call's verified certificate: undefined accepts it, a string says why not. Its
     * verdict goes into PEER_VERDICT_HEADER ("ok" or the reason), computed per call (a pin may
     * change while a TLS session lasts).
     */
    judge?: (cert: X509Certificate) => string | undefined;
  } = {},
): ServerInterceptor {
  const ca = new X509Certificate(caCertPem);
  const seen = new WeakMap<object, X509Certificate | undefined>();
  return (_method, call: ServerInterceptingCallInterface) => {
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        metadata.remove(PEER_CN_HEADER);
        metadata.remove(PEER_VERDICT_HEADER);
        const peer = call.getAuthContext().sslPeerCertificate;
        let cert: X509Certificate | undefined;
        if (peer?.raw) {
          // One verification per certificate object (one per TLS session), not per call.
          if (seen.has(peer)) cert = seen.get(peer);
          else {
            cert = verifiedPeerCertificate(peer.raw, ca);
            seen.set(peer, cert);
          }
        }
        const cn = cert && commonNameOf(cert);
        if (cn) metadata.set(PEER_CN_HEADER, cn);
        if (cert && opts.judge) metadata.set(PEER_VERDICT_HEADER, headerSafe(opts.judge(cert) ?? "ok"));
        next(metadata);
      })
      .build();
    return new ServerInterceptingCall(call, { start: (next) => next(listener) });
  };
}

/** Metadata values are printable ASCII. */
function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 500);
}
