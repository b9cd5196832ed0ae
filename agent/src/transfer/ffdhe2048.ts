/**
 * RFC 7919's ffdhe2048 group (public, fixed), as QEMU's dh-params.pem. Without that file QEMU's
 * tls-creds-x509 generates Diffie-Hellman parameters when it loads a server's credentials: 250 ms
 * for qemu-nbd to start here, and 400-550 ms inside libvirt's backup-begin, that is inside the
 * guest's freeze window (measured on this 2-core lab machine, docs/field-notes.md). TLS 1.3 uses
 * ECDHE and never these; TLS 1.2 DHE may, and a named group is what RFC 7919 recommends.
 */
export const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;
