import type { CallContext } from "nice-grpc-common";
import { CairnError } from "../../../shared/src/errors/CairnError.js";
import type {
  ProbeRepositoriesRequest,
  ProbeRepositoriesResponse,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import { repositoryReach } from "../../../shared/src/grpc/wire/repositoryReach.js";
import type { ReachKeeper } from "../reach/ReachKeeper.js";

/** Targets one request may name (a fleet registers a handful of repositories). */
export const MAX_PROBE_TARGETS = 64;
const MAX_LOCATION_LENGTH = 4096;
const MAX_NAME_LENGTH = 256;

/**
 * ProbeRepositories (docs/transfer-paths.md §2): probes the named repositories and this host's own
 * extra locations and answers what it reached; the results also go into the host inventory.
 */
export async function probeRepositoriesRpc(
  reach: Pick<ReachKeeper, "probe">,
  req: ProbeRepositoriesRequest,
  ctx: CallContext,
): Promise<ProbeRepositoriesResponse> {
  if (req.targets.length > MAX_PROBE_TARGETS)
    throw new CairnError(
      "invalid-argument",
      `targets names ${req.targets.length} repositories; at most ${MAX_PROBE_TARGETS} per request`,
    );
  const targets = req.targets.map((t, i) => {
    const location = t.location.trim();
    if (!location) throw new CairnError("invalid-argument", `targets[${i}].location is empty`);
    if (location.length > MAX_LOCATION_LENGTH)
      throw new CairnError(
        "invalid-argument",
        `targets[${i}].location is ${location.length} characters long; at most ${MAX_LOCATION_LENGTH}`,
      );
    if (t.name.length > MAX_NAME_LENGTH)
      throw new CairnError(
        "invalid-argument",
        `targets[${i}].name is ${t.name.length} characters long; at most ${MAX_NAME_LENGTH}`,
      );
    return { name: t.name, location };
  });
  const results = await reach.probe(targets, ctx.signal);
  return { reach: results.map(repositoryReach.toWire) };
}
