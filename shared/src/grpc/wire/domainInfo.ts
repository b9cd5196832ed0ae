import type { DiskInfo as WireDiskInfo, DomainInfo as WireDomainInfo } from "../../gen/cairn/v1/common.js";
import { type DomainPowerState, domainState } from "./domainState.js";

/** A domain in plain types, as the agent's hypervisor port reports it. */
export interface DomainFacts<Disk extends DiskFacts = DiskFacts> {
  uuid: string;
  name: string;
  state: DomainPowerState;
  persistent: boolean;
  disks: readonly Disk[];
  labels: Record<string, string>;
  hasGuestAgentChannel: boolean;
}

export interface DiskFacts {
  target: string;
  format: string;
  source: string;
  device: string;
  /** Bytes; 0 when unknown (the agent does not read image sizes for inventory). */
  virtualSize?: number;
}

export const domainInfo = {
  toWire: (d: DomainFacts): WireDomainInfo => ({
    uuid: d.uuid,
    name: d.name,
    state: domainState.toWire(d.state),
    persistent: d.persistent,
    disks: d.disks.map((k) => ({
      target: k.target,
      format: k.format,
      source: k.source,
      device: k.device,
      virtualSize: BigInt(k.virtualSize ?? 0),
    })),
    labels: d.labels,
    hasGuestAgentChannel: d.hasGuestAgentChannel,
  }),

  fromWire: (d: WireDomainInfo): DomainFacts<Required<DiskFacts>> => ({
    uuid: d.uuid,
    name: d.name,
    state: domainState.fromWire(d.state),
    persistent: d.persistent,
    disks: d.disks.map((k: WireDiskInfo) => ({ ...k, virtualSize: Number(k.virtualSize) })),
    labels: d.labels,
    hasGuestAgentChannel: d.hasGuestAgentChannel,
  }),
};
