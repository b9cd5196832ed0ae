/** A libvirt domain as the agent reports it (the core's type; the gRPC layer maps it). */
export type DomainPowerState =
  | "running"
  | "blocked"
  | "paused"
  | "shutdown"
  | "shutoff"
  | "crashed"
  | "pmsuspended"
  | "unknown";

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
