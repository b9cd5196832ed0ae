import type { DomainPowerState } from "../../../shared/src/grpc/wire/domainState.js";

// The states are defined with their wire enum (shared/src/grpc/wire/domainInfo.ts maps this type).
export type { DomainPowerState };

/** A libvirt domain as the agent reports it (the core's type; the gRPC layer maps it). */
export interface DiskInfo {
  target: string;
  /** "qcow2", "raw", ... ("" when libvirt does not say). */
  format: string;
  /** File path or block device; "" for network or empty drives. */
  source: string;
  /** "disk", "cdrom", "floppy", "lun". */
  device: string;
}

export interface DomainInfo {
  uuid: string;
  name: string;
  state: DomainPowerState;
  persistent: boolean;
  disks: DiskInfo[];
  labels: Record<string, string>;
  hasGuestAgentChannel: boolean;
}
