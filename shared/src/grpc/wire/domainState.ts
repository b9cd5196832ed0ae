import { DomainState } from "../../gen/cairn/v1/common.js";

/** libvirt's name for a domain's power state (virDomainState), as the agent's core and the store use it. */
export type DomainPowerState =
  | "running"
  | "blocked"
  | "paused"
  | "shutdown"
  | "shutoff"
  | "crashed"
  | "pmsuspended"
  | "unknown";

const BY_NAME: Readonly<Record<DomainPowerState, DomainState>> = {
  running: DomainState.DOMAIN_STATE_RUNNING,
  blocked: DomainState.DOMAIN_STATE_BLOCKED,
  paused: DomainState.DOMAIN_STATE_PAUSED,
  shutdown: DomainState.DOMAIN_STATE_SHUTDOWN,
  shutoff: DomainState.DOMAIN_STATE_SHUTOFF,
  crashed: DomainState.DOMAIN_STATE_CRASHED,
  pmsuspended: DomainState.DOMAIN_STATE_PMSUSPENDED,
  unknown: DomainState.DOMAIN_STATE_UNSPECIFIED,
};
const BY_WIRE = new Map<number, DomainPowerState>(
  Object.entries(BY_NAME).map(([k, v]) => [v, k as DomainPowerState]),
);

/**
 * Unlike the job modes, a state this build does not know is not an error: it is reported, never
 * acted on, so it reads as "unknown" (and a name not in the union, e.g. from an old store row, too).
 */
export const domainState = {
  toWire: (name: string): DomainState =>
    BY_NAME[name as DomainPowerState] ?? DomainState.DOMAIN_STATE_UNSPECIFIED,
  fromWire: (value: DomainState): DomainPowerState => BY_WIRE.get(value) ?? "unknown",
};
