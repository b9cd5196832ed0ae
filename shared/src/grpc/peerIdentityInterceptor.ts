import { X509Certificate } from "node:crypto";
import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  ServerListenerBuilder,
} from "@grpc/grpc-js";

/** Metadata key carrying the verified client certificate's CN to handlers. Never trusted from the wire. */
export const PEER_CN_HEADER = "x-cairn-peer-cn";

/**
 * The CN of a client certificate the fleet CA issued, or undefined. The coordinator's TLS server
 * accepts connections without a client certificate (agents call Enroll before they have one), so
 * TLS does not reject foreign certificates by itself: they are checked here against the CA.
 */
export function verifiedPeerCommonName(
  raw: Buffer | undefined,
  ca: X509Certificate,
  now = new Date(),
): string | undefined {
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
  const m = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject);
  return m?.[1]?.trim();
}

/**
 * grpc-js server interceptor: strips any client-sent PEER_CN_HEADER and, when the connection
 * presented a certificate the CA issued (checked per call, see verifiedPeerCommonName), sets it
 * to that certificate's CN.
 */
export function peerIdentityInterceptor(caCertPem: string): ServerInterceptor {
  const ca = new X509Certificate(caCertPem);
  const seen = new WeakMap<object, string | undefined>();
  return (_method, call: ServerInterceptingCallInterface) => {
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        metadata.remove(PEER_CN_HEADER);
        const peer = call.getAuthContext().sslPeerCertificate;
        let cn: string | undefined;
        if (peer?.raw) {
          // One verification per certificate object (one per TLS session), not per call.
          if (seen.has(peer)) cn = seen.get(peer);
          else {
            cn = verifiedPeerCommonName(peer.raw, ca);
            seen.set(peer, cn);
          }
        }
        if (cn) metadata.set(PEER_CN_HEADER, cn);
        next(metadata);
      })
      .build();
    return new ServerInterceptingCall(call, { start: (next) => next(listener) });
  };
}
