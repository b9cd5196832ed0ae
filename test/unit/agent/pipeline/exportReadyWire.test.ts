import { describe, expect, it } from "vitest";
import type { ExportDescriptor } from "../../../../agent/src/backup/pipeline/descriptor/ExportDescriptor.js";
import { exportReadyWire } from "../../../../agent/src/backup/pipeline/descriptor/exportReadyWire.js";
import { isCairnError } from "../../../../shared/src/errors/CairnError.js";
import { ExportReady } from "../../../../shared/src/gen/cairn/v1/agent.js";

const tls = { caPem: "CA", certPem: "CLIENT", keyPem: "", serverName: "kvm-01.example" };
const descriptor: ExportDescriptor = {
  domain: { uuid: "6f1c2b8e-3d47-4a51-9d0e-0000000000aa", name: "vm-1" },
  disks: [
    {
      target: "vda",
      endpoint: { kind: "tcp", host: "10.0.0.5", port: 10810, tls },
      exportName: "vda",
      dirtyBitmap: "backup-vda",
      sourceFormat: "qcow2",
      plan: {
        target: "vda",
        kind: "incremental",
        incrementalFrom: "cairn-1",
        parentSnapshot: "20260101T000000Z-0123abcd",
        fullReason: null,
        bitmap: true,
      },
    },
    {
      target: "vdb",
      endpoint: { kind: "tcp", host: "10.0.0.5", port: 10810, tls },
      exportName: "vdb",
      dirtyBitmap: undefined,
      sourceFormat: "raw",
      plan: {
        target: "vdb",
        kind: "full",
        incrementalFrom: null,
        parentSnapshot: null,
        fullReason: "raw-format disk",
        bitmap: false,
      },
    },
  ],
  newCheckpoint: "cairn-2",
  domainXml: "<domain/>",
  configFiles: { version: 1, capturedAt: "2026-01-01T00:00:00.000Z", files: [] },
  consistency: { kind: "quiesced", freezeMs: 12.5 },
  freezeWindowMs: 12.5,
  offline: false,
  mode: "auto",
  maxBytesPerSecond: 50_000_000,
};

describe("exportReadyWire", () => {
  it("round-trips through the proto message; the reader's own key is added, never sent", () => {
    const wire = exportReadyWire.toWire(descriptor);
    expect(JSON.stringify(wire, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain("KEY");
    const back = exportReadyWire.fromWire(ExportReady.decode(ExportReady.encode(wire).finish()), {
      keyPem: "READER KEY",
    });
    const withKey = (d: ExportDescriptor) => ({
      ...d,
      disks: d.disks.map((x) => ({
        ...x,
        endpoint: { ...x.endpoint, tls: { ...tls, keyPem: "READER KEY" } },
      })),
    });
    expect(back).toEqual(withKey(descriptor));
  });

  it("hands only network exports over; a disk on another port names its own address", () => {
    const local = {
      ...descriptor,
      disks: descriptor.disks.map((d) => ({
        ...d,
        endpoint: { kind: "unix" as const, path: "/run/x.sock" },
      })),
    };
    expect(() => exportReadyWire.toWire(local)).toThrow(/not a network export/);
    const two = {
      ...descriptor,
      disks: [
        descriptor.disks[0]!,
        { ...descriptor.disks[1]!, endpoint: { kind: "tcp" as const, host: "10.0.0.5", port: 10811, tls } },
      ],
    };
    const wire = exportReadyWire.toWire(two);
    expect(wire.disks[0]?.address).toBe("");
    expect(wire.disks[1]?.address).toBe("10.0.0.5:10811");
    const back = exportReadyWire.fromWire(wire, { keyPem: "K" });
    expect(
      back.disks.map((d) => d.endpoint.kind === "tcp" && `${d.endpoint.host}:${d.endpoint.port}`),
    ).toEqual([wire.address, "10.0.0.5:10811"]);
    const otherCa = {
      ...two,
      disks: [
        two.disks[0]!,
        { ...two.disks[1]!, endpoint: { ...two.disks[1]!.endpoint, tls: { ...tls, caPem: "X" } } },
      ],
    };
    expect(() => exportReadyWire.toWire(otherCa)).toThrow(/mixes endpoints or TLS material/);
  });

  it("refuses a message it cannot read, naming the field", () => {
    const wire = exportReadyWire.toWire(descriptor);
    for (const bad of [
      { address: "10.0.0.5" },
      { caPem: "" },
      { mode: "weekly" },
      { consistencyJson: "{}" },
    ]) {
      const e = (() => {
        try {
          exportReadyWire.fromWire({ ...wire, ...bad }, { keyPem: "K" });
        } catch (err) {
          return err;
        }
      })();
      expect(isCairnError(e, "invalid-argument"), JSON.stringify(bad)).toBe(true);
    }
  });
});
