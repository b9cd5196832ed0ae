import { join } from "node:path";
import { pullBackupXml } from "../../../hypervisor/backupXml.js";
import { QemuNbdExport } from "../../../offline/QemuNbdExport.js";
import type { ExportServer } from "./ExportServer.js";

/** Local (LAN-free) exports: unix sockets in the job's directory, read by this agent. */
export const localExportServer: ExportServer = {
  maxBytesPerSecond: 0,
  async live({ jobDir }) {
    // The socket's directory belongs to QEMU's user (made with the job directory).
    const socketPath = join(jobDir, "nbd", "backup.sock");
    return {
      backupXml: (disks) => pullBackupXml({ socketPath, disks }),
      endpoint: (_exportName, reported) => ({ kind: "unix", path: reported ?? socketPath }),
      holdForBegin: async () => async () => {},
      close: async () => {},
    };
  },
  async qemuNbd(o) {
    const e = await QemuNbdExport.start({
      image: o.image,
      format: o.format,
      socketPath: o.socketPath,
      exportName: o.exportName,
      ...(o.bitmap ? { bitmap: o.bitmap } : {}),
      startTimeoutMs: 30_000,
      signal: o.signal,
    });
    return { pid: e.pid, endpoint: { kind: "unix", path: o.socketPath }, stop: () => e.stop() };
  },
};
