import type { HostInventory as WireHostInventory } from "../../gen/cairn/v1/common.js";
import { type RepositoryReach, repositoryReach } from "./repositoryReach.js";

/** An agent's roles (docs/transfer-paths.md §1). */
export type AgentRole = "hypervisor" | "mover";

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
  /** Absent from inventories of agents older than transfer paths: read as ["hypervisor"]. */
  roles?: AgentRole[];
  /** What this host reached at its last probe. */
  repositories?: RepositoryReach[];
  /** Where readers on other hosts reach this host's NBD exports ("" none). */
  transferAddress?: string;
  /** A mover appliance's hypervisor host ("" none). */
  applianceOf?: string;
};

const ROLES: readonly AgentRole[] = ["hypervisor", "mover"];

export const hostInventory = {
  toWire: (h: HostInventory): WireHostInventory => ({
    hostId: h.hostId,
    hostname: h.hostname,
    os: h.os,
    kernel: h.kernel,
    cpuCount: h.cpuCount,
    memoryBytes: BigInt(h.memoryBytes),
    libvirtVersion: h.libvirtVersion,
    qemuVersion: h.qemuVersion,
    agentVersion: h.agentVersion,
    libvirtUri: h.libvirtUri,
    roles: h.roles ?? ["hypervisor"],
    repositories: (h.repositories ?? []).map(repositoryReach.toWire),
    transferAddress: h.transferAddress ?? "",
    applianceOf: h.applianceOf ?? "",
  }),
  fromWire: (h: WireHostInventory): HostInventory => ({
    hostId: h.hostId,
    hostname: h.hostname,
    os: h.os,
    kernel: h.kernel,
    cpuCount: h.cpuCount,
    memoryBytes: Number(h.memoryBytes),
    libvirtVersion: h.libvirtVersion,
    qemuVersion: h.qemuVersion,
    agentVersion: h.agentVersion,
    libvirtUri: h.libvirtUri,
    // An old agent sends no roles: it is a hypervisor, as every agent was.
    roles: h.roles.length
      ? h.roles.filter((r): r is AgentRole => (ROLES as string[]).includes(r))
      : ["hypervisor"],
    repositories: h.repositories.map(repositoryReach.fromWire),
    transferAddress: h.transferAddress,
    applianceOf: h.applianceOf,
  }),
};
