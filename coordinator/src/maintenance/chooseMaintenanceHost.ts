/**
 * Which agent runs a maintenance job of a repository: the one the operator named, else the online
 * host whose job most recently succeeded against that repository (it demonstrably reaches it: on
 * LAN-free storage only some hosts do), else the first online host by id. Undefined while none is
 * online; the reason says why the host was chosen.
 */
export function chooseMaintenanceHost(input: {
  requested: string;
  online: ReadonlySet<string>;
  /** Recently succeeded jobs, newest first. */
  recent: readonly { hostId: string; repository: string }[];
  repository: string;
}): { hostId: string; reason: string } | undefined {
  if (input.requested)
    return input.online.has(input.requested)
      ? { hostId: input.requested, reason: "the host asked for" }
      : undefined;
  const writer = input.recent.find((j) => j.repository === input.repository && input.online.has(j.hostId));
  if (writer) return { hostId: writer.hostId, reason: `its last job reached repository ${input.repository}` };
  const first = [...input.online].sort()[0];
  return first === undefined
    ? undefined
    : { hostId: first, reason: `no online host has reached repository ${input.repository} yet` };
}
