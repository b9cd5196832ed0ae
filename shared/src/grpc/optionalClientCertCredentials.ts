import { ServerCredentials } from "@grpc/grpc-js";
import { CIPHER_SUITES } from "@grpc/grpc-js/build/src/tls-helpers.js";

/**
 * TLS server credentials that ask every client for a certificate but also accept clients without
 * one (agents call Enroll before they have a certificate). grpc-js's createSsl cannot express this:
 * it either does not ask, or rejects clients without a certificate. Certificates presented are
 * verified per call by peerIdentityInterceptor, never trusted because TLS accepted them.
 */
class OptionalClientCertCredentials extends ServerCredentials {
  constructor(caPem: string, certPem: string, keyPem: string) {
    super(
      { requestCert: true, rejectUnauthorized: false, ...(CIPHER_SUITES ? { ciphers: CIPHER_SUITES } : {}) },
      { ca: Buffer.from(caPem), cert: [Buffer.from(certPem)], key: [Buffer.from(keyPem)] },
    );
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

export function optionalClientCertCredentials(
  caPem: string,
  certPem: string,
  keyPem: string,
): ServerCredentials {
  return new OptionalClientCertCredentials(caPem, certPem, keyPem);
}
