import { CairnError } from "../../../../../shared/src/errors/CairnError.js";
import type { ExportReady } from "../../../../../shared/src/gen/cairn/v1/agent.js";
import type { BackupMode } from "../../../../../shared/src/grpc/wire/backupMode.js";
import {
  type BackupKind,
  consistencySchema,
} from "../../../../../shared/src/repository/manifest/SnapshotManifest.js";
import { vmConfigFilesSchema } from "../../../../../shared/src/repository/manifest/VmConfigFiles.js";
import type { ExportDescriptor } from "./ExportDescriptor.js";

const MODES: readonly BackupMode[] = ["full", "incremental", "differential", "copy", "auto"];
const KINDS: readonly BackupKind[] = ["full", "incremental", "differential", "copy"];

/**
 * ExportDescriptor ⇄ proto ExportReady, the one mapping (docs/transfer-paths.md §4). Only network
 * exports cross, with one set of TLS material; a disk served on another port than the first (one
 * qemu-nbd per disk) names its own address. The reader's private key never travels: fromWire takes
 * it from the reader's own identity.
 */
export const exportReadyWire = {
  toWire(d: ExportDescriptor): ExportReady {
    const first = d.disks[0]?.endpoint;
    if (first?.kind !== "tcp") {
      throw new CairnError("internal", `export of ${d.domain.name} is not a network export`, {
        hint: "only tcp+tls exports are handed to another host",
      });
    }
    for (const x of d.disks) {
      const e = x.endpoint;
      if (e.kind !== "tcp" || e.tls.caPem !== first.tls.caPem || e.tls.certPem !== first.tls.certPem) {
        throw new CairnError("internal", `export of ${d.domain.name} mixes endpoints or TLS material`, {
          hint: "every disk of a network export is served with the job's one set of credentials",
        });
      }
    }
    const address = hostPort(first);
    return {
      address,
      serverName: first.tls.serverName,
      caPem: first.tls.caPem,
      clientCertificatePem: first.tls.certPem,
      disks: d.disks.map((x) => ({
        target: x.target,
        address: hostPort(x.endpoint) === address ? "" : hostPort(x.endpoint),
        exportName: x.exportName,
        dirtyBitmap: x.dirtyBitmap ?? "",
        sourceFormat: x.sourceFormat,
        kind: x.plan.kind,
        incrementalFrom: x.plan.incrementalFrom ?? "",
        parentSnapshot: x.plan.parentSnapshot ?? "",
        fullReason: x.plan.fullReason ?? "",
        bitmap: x.plan.bitmap,
      })),
      newCheckpoint: d.newCheckpoint ?? "",
      domainUuid: d.domain.uuid,
      domainName: d.domain.name,
      domainXml: d.domainXml,
      configFilesJson: JSON.stringify(d.configFiles),
      consistencyJson: JSON.stringify(d.consistency),
      freezeMs: d.freezeWindowMs ?? 0,
      offline: d.offline,
      mode: d.mode,
      maxBytesPerSecond: BigInt(Math.max(0, Math.trunc(d.maxBytesPerSecond))),
    };
  },

  /** "invalid-argument" naming the field when the message is not a usable export. */
  fromWire(w: ExportReady, reader: { keyPem: string }): ExportDescriptor {
    const main = parseHostPort("export_ready.address", w.address);
    if (!w.caPem || !w.clientCertificatePem || !w.serverName)
      throw new CairnError(
        "invalid-argument",
        "export_ready lacks its TLS material (ca, client certificate, server name)",
      );
    if (!w.domainUuid || !w.domainName)
      throw new CairnError("invalid-argument", "export_ready.domain_uuid and domain_name are required");
    if (!MODES.includes(w.mode as BackupMode))
      throw new CairnError(
        "invalid-argument",
        `export_ready.mode ${JSON.stringify(w.mode)} is not a backup mode`,
      );
    const tls = {
      caPem: w.caPem,
      certPem: w.clientCertificatePem,
      keyPem: reader.keyPem,
      serverName: w.serverName,
    };
    return {
      domain: { uuid: w.domainUuid, name: w.domainName },
      disks: w.disks.map((x) => {
        if (!KINDS.includes(x.kind as BackupKind))
          throw new CairnError(
            "invalid-argument",
            `export_ready.disks[${x.target}].kind ${JSON.stringify(x.kind)} is not a backup kind`,
          );
        const at = x.address ? parseHostPort(`export_ready.disks[${x.target}].address`, x.address) : main;
        return {
          target: x.target,
          endpoint: { kind: "tcp" as const, ...at, tls },
          exportName: x.exportName,
          dirtyBitmap: x.dirtyBitmap || undefined,
          sourceFormat: x.sourceFormat,
          plan: {
            target: x.target,
            kind: x.kind as BackupKind,
            incrementalFrom: x.incrementalFrom || null,
            parentSnapshot: x.parentSnapshot || null,
            fullReason: x.fullReason || null,
            bitmap: x.bitmap,
          },
        };
      }),
      newCheckpoint: w.newCheckpoint || null,
      domainXml: w.domainXml,
      configFiles: parseJson("config_files_json", w.configFilesJson, (v) => vmConfigFilesSchema.parse(v)),
      consistency: parseJson("consistency_json", w.consistencyJson, (v) => consistencySchema.parse(v)),
      freezeWindowMs: w.freezeMs > 0 ? w.freezeMs : undefined,
      offline: w.offline,
      mode: w.mode as BackupMode,
      maxBytesPerSecond: Number(w.maxBytesPerSecond),
    };
  },
};

function hostPort(e: ExportDescriptor["disks"][number]["endpoint"]): string {
  if (e.kind !== "tcp")
    throw new CairnError("internal", "a unix-socket export cannot be read from another host");
  return `${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`;
}

function parseHostPort(field: string, text: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535)
    throw new CairnError("invalid-argument", `${field} ${JSON.stringify(text)} is not host:port`);
  return { host: m[1] as string, port };
}

function parseJson<T>(field: string, text: string, parse: (v: unknown) => T): T {
  try {
    return parse(JSON.parse(text));
  } catch (err) {
    throw new CairnError(
      "invalid-argument",
      `export_ready.${field} does not parse: ${(err as Error).message}`,
    );
  }
}
