import { join } from "node:path";
import { pullBackupXml } from "../../../hypervisor/backupXml.js";
import { QemuNbdExport } from "../../../offline/QemuNbdExport.js";
import { reserveExportPort, withExportPort } from "../../../transfer/exportPort.js";
import type {
  ExportEndpoint,
  JobCredentials,
  JobTlsMinter,
  LibvirtTlsDir,
} from "../../../transfer/JobTls.js";
import type { ExportServer } from "./ExportServer.js";

export interface NetworkExportOptions {
  /** This host's transfer.address: what the server certificate names and readers dial. */
  address: string;
  /** The assigned reader's fleet certificate: the job's client certificate is issued for its key. */
  readerCertificatePem: string;
  readerName: string;
  tlsMinter: JobTlsMinter;
  libvirtTlsDir: LibvirtTlsDir;
  /** transfer.portMin..portMax: where exports listen. */
  ports: { min: number; max: number };
  /** transfer.maxExportBytesPerSecond; 0 for none. */
  maxBytesPerSecond: number;
}

/**
 * Network exports for one job (docs/transfer-paths.md §4-§5): TCP with TLS on `address`, readable
 * only with the client certificate minted for the assigned reader's key. The job's credentials are
 * made once, in the job's directory, on first use.
 */
export function networkExportServer(o: NetworkExportOptions): ExportServer {
  let minted: Promise<JobCredentials> | undefined;
  const credentials = (jobDir: string, signal: AbortSignal) => {
    minted ??= o.tlsMinter.mint(
      {
        dir: join(jobDir, "tls"),
        serverName: o.address,
        readerCertificatePem: o.readerCertificatePem,
        readerName: o.readerName,
      },
      signal,
    );
    minted.catch(() => {
      minted = undefined;
    });
    return minted;
  };
  const endpoint = (port: number, c: JobCredentials): ExportEndpoint => ({
    kind: "tcp",
    host: o.address,
    port,
    // The reader presents its own fleet key (never sent); the VM host knows only the certificate.
    tls: { caPem: c.caPem, certPem: c.clientCertPem, keyPem: "", serverName: c.serverName },
  });
  return {
    maxBytesPerSecond: o.maxBytesPerSecond,
    async live({ jobDir, signal }) {
      await o.libvirtTlsDir.check(signal);
      const creds = await credentials(jobDir, signal);
      const port = await reserveExportPort({ host: o.address, ...o.ports }, signal);
      return {
        backupXml: (disks) => pullBackupXml({ tcp: { host: o.address, port: port.port, tls: true }, disks }),
        endpoint: () => endpoint(port.port, creds),
        holdForBegin: (holdSignal) => holdCredentials(o.libvirtTlsDir, creds, holdSignal),
        close: async () => port.release(),
      };
    },
    async qemuNbd(r) {
      const creds = await credentials(r.jobDir, r.signal);
      // qemu-nbd binds when it starts: a port lost to another process is retried with the next.
      return withExportPort(
        { host: o.address, ...o.ports },
        async (port) => {
          const e = await QemuNbdExport.start({
            image: r.image,
            format: r.format,
            exportName: r.exportName,
            ...(r.bitmap ? { bitmap: r.bitmap } : {}),
            tcp: { host: o.address, port, tlsDir: creds.dir },
            startTimeoutMs: 30_000,
            signal: r.signal,
          });
          return { pid: e.pid, endpoint: endpoint(port, creds), stop: () => e.stop() };
        },
        r.signal,
      );
    },
  };
}

/**
 * LibvirtTlsDir.withCredentials as a hold: resolves once the directory has this job's credentials,
 * and keeps it until the returned release is called (after backup-begin returned).
 */
async function holdCredentials(
  dir: LibvirtTlsDir,
  creds: JobCredentials,
  signal: AbortSignal,
): Promise<() => Promise<void>> {
  let acquired!: () => void;
  let release!: () => void;
  const got = new Promise<void>((r) => {
    acquired = r;
  });
  const released = new Promise<void>((r) => {
    release = r;
  });
  const held = dir.withCredentials(
    creds,
    async () => {
      acquired();
      await released;
    },
    signal,
  );
  await Promise.race([got, held]);
  return async () => {
    release();
    await held.catch(() => {});
  };
}
