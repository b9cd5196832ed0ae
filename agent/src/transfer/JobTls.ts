/**
 * A network export's TLS material for one job (docs/transfer-paths.md §5). Made by the VM host's
 * agent; only the reader's public key (from its fleet certificate) is involved, never its private key.
 */
export interface JobCredentials {
  /** The job's throwaway CA (PEM): the only trust anchor on both sides. */
  caPem: string;
  /** Server certificate (PEM) for the export's address, and its key (PEM). */
  serverCertPem: string;
  serverKeyPem: string;
  /** The name the server certificate carries (what the reader checks). */
  serverName: string;
  /** Client certificate (PEM) issued for the reader's public key, for the reader to present. */
  clientCertPem: string;
  /**
   * A directory (mode 0700, readable by QEMU's user) with ca-cert.pem, server-cert.pem and
   * server-key.pem: what qemu-nbd's tls-creds-x509 object reads for an offline export.
   */
  dir: string;
}

/** Port: makes a job's credentials (agent/src/transfer/ has the openssl adapter). */
export interface JobTlsMinter {
  /**
   * Makes the job's CA, the server certificate for `serverName` and the client certificate for the
   * public key in `readerCertificatePem`, in `dir` (created). "invalid-argument" when the reader's
   * certificate cannot be parsed.
   */
  mint(
    opts: { dir: string; serverName: string; readerCertificatePem: string; readerName: string },
    signal: AbortSignal,
  ): Promise<JobCredentials>;
}

/**
 * Port: libvirt's backup TLS directory (qemu.conf backup_tls_x509_cert_dir), shared by every job on
 * the host. QEMU reads it when a backup begins, so a job's credentials are written there and held
 * until its backup-begin has returned; concurrent jobs wait their turn (§5).
 */
export interface LibvirtTlsDir {
  /** Refuses ("failed-precondition", naming the setting) when libvirt is not set up for it. */
  check(signal: AbortSignal): Promise<void>;
  withCredentials<T>(creds: JobCredentials, fn: () => Promise<T>, signal: AbortSignal): Promise<T>;
}

/** Where a reader finds one disk's export. */
export type ExportEndpoint =
  | { kind: "unix"; path: string }
  | {
      kind: "tcp";
      host: string;
      port: number;
      /** Always set for tcp: plaintext network exports do not exist (§5). */
      tls: { caPem: string; certPem: string; keyPem: string; serverName: string };
    };
