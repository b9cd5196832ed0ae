import type { RepositoryReach as WireRepositoryReach } from "../../gen/cairn/v1/common.js";

/** Whether one host reaches one repository, and how fast (docs/transfer-paths.md §2), in plain types. */
export type RepositoryReach = {
  /** The id in the repository's config; "" when it could not be opened. */
  repositoryId: string;
  /** The coordinator's name for it, when the probe asked by name. */
  name: string;
  /** The access path this host opens it by. */
  location: string;
  reachable: boolean;
  error: string;
  writeMiBs: number;
  readMiBs: number;
  probedMs: number;
  /** Set by the coordinator when it lists reach across hosts. */
  hostId: string;
};

export const repositoryReach = {
  toWire: (r: RepositoryReach): WireRepositoryReach => ({
    repositoryId: r.repositoryId,
    name: r.name,
    location: r.location,
    reachable: r.reachable,
    error: r.error,
    writeMibS: r.writeMiBs,
    readMibS: r.readMiBs,
    probedMs: BigInt(Math.round(r.probedMs)),
    hostId: r.hostId,
  }),
  fromWire: (r: WireRepositoryReach): RepositoryReach => ({
    repositoryId: r.repositoryId,
    name: r.name,
    location: r.location,
    reachable: r.reachable,
    error: r.error,
    writeMiBs: r.writeMibS,
    readMiBs: r.readMibS,
    probedMs: Number(r.probedMs),
    hostId: r.hostId,
  }),
};
