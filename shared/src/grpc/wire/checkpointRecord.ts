import type { CheckpointRecord } from "../../gen/cairn/v1/agent.js";

/** A libvirt checkpoint in plain types, as the agent's hypervisor port reports it. */
export interface CheckpointFacts {
  name: string;
  parent: string | undefined;
  /** Seconds since the epoch, as libvirt's creationTime. */
  creationTime: number;
  /** Disk target → bitmap name. */
  bitmaps: Readonly<Record<string, string>>;
  xml: string;
}

export const checkpointRecord = {
  toWire: (c: CheckpointFacts): CheckpointRecord => ({
    name: c.name,
    parent: c.parent ?? "",
    bitmaps: { ...c.bitmaps },
    xml: c.xml,
    createdMs: BigInt(Math.trunc(c.creationTime)) * 1000n,
  }),
  /** The one about to be made: no XML and no time yet. */
  pendingToWire: (c: {
    name: string;
    parent: string | undefined;
    bitmaps: Readonly<Record<string, string>>;
  }) =>
    ({
      name: c.name,
      parent: c.parent ?? "",
      bitmaps: { ...c.bitmaps },
      xml: "",
      createdMs: 0n,
    }) satisfies CheckpointRecord,
  fromWire: (c: CheckpointRecord): CheckpointFacts => ({
    name: c.name,
    parent: c.parent || undefined,
    creationTime: Number(c.createdMs / 1000n),
    bitmaps: { ...c.bitmaps },
    xml: c.xml,
  }),
};
