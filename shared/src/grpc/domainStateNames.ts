import { DomainState } from "../gen/cairn/v1/common.js";

/** libvirt state names as the agent's core uses them, and their wire enum. */
export const DOMAIN_STATE_BY_NAME: Record<string, DomainState> = {
  running: DomainState.DOMAIN_STATE_RUNNING,
  blocked: DomainState.DOMAIN_STATE_BLOCKED,
  paused: DomainState.DOMAIN_STATE_PAUSED,
  shutdown: DomainState.DOMAIN_STATE_SHUTDOWN,
  shutoff: DomainState.DOMAIN_STATE_SHUTOFF,
  crashed: DomainState.DOMAIN_STATE_CRASHED,
  pmsuspended: DomainState.DOMAIN_STATE_PMSUSPENDED,
  unknown: DomainState.DOMAIN_STATE_UNSPECIFIED,
};

const NAME_BY_STATE = new Map(Object.entries(DOMAIN_STATE_BY_NAME).map(([k, v]) => [v, k]));

export function domainStateName(s: DomainState): string {
  return NAME_BY_STATE.get(s) ?? "unknown";
}

export function domainStateFromName(name: string): DomainState {
  return DOMAIN_STATE_BY_NAME[name] ?? DomainState.DOMAIN_STATE_UNSPECIFIED;
}
