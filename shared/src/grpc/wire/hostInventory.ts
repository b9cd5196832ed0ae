import type { HostInventory as WireHostInventory } from "../../gen/cairn/v1/common.js";

/** Facts about an agent's host in plain types (memory as a number: exact below 8 PiB). A type, not an
 * interface: the coordinator stores it as a plain record. */
export type HostInventory = {
  hostId: string;
  hostname: string;
  os: string;
  kernel: string;
  cpuCount: number;
  memoryBytes: number;
  libvirtVersion: string;
  qemuVersion: string;
  agentVersion: string;
  libvirtUri: string;
};

export const hostInventory = {
  toWire: (h: HostInventory): WireHostInventory => ({ ...h, memoryBytes: BigInt(h.memoryBytes) }),
  fromWire: (h: WireHostInventory): HostInventory => ({ ...h, memoryBytes: Number(h.memoryBytes) }),
};
