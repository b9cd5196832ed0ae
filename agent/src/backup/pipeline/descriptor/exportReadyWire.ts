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
 * exports cross: every disk is served on one TLS endpoint (ExportReady has one address). The
 * reader's private key never travels: fromWire takes it from the reader's own identity.
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
      if (e.kind !== "tcp" || e.host !== first.host || e.port !== first.port) {
        throw new CairnError("internal", `export of ${d.domain.name} serves its disks on several endpoints`, {
          hint: "ExportReady carries one address for every disk",
        });
      }
    }
    return {
      address: `${first.host.includes(":") ? `[${first.host}]` : first.host}:${first.port}`,
      serverName: first.tls.serverName,
      caPem: first.tls.caPem,
      clientCertificatePem: first.tls.certPem,
      disks: d.disks.map((x) => ({
        target: x.target,
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
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(w.address);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535)
      throw new CairnError(
        "invalid-argument",
        `export_ready.address ${JSON.stringify(w.address)} is not host:port`,
      );
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
    const endpoint = {
      kind: "tcp" as const,
      host: m[1]!,
      port,
      tls: {
        caPem: w.caPem,
        certPem: w.clientCertificatePem,
        keyPem: reader.keyPem,
        serverName: w.serverName,
      },
    };
    return {
      domain: { uuid: w.domainUuid, name: w.domainName },
      disks: w.disks.map((x) => {
        if (!KINDS.includes(x.kind as BackupKind))
          throw new CairnError(
            "invalid-argument",
            `export_ready.disks[${x.target}].kind ${JSON.stringify(x.kind)} is not a backup kind`,
          );
        return {
          target: x.target,
          endpoint,
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
