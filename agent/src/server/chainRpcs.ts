import type { CallContext } from "nice-grpc-common";
import type {
  DescribeChainRequest,
  DescribeChainResponse,
  ForgetCheckpointsRequest,
  ForgetCheckpointsResponse,
  RedefineCheckpointsRequest,
  RedefineCheckpointsResponse,
} from "../../../shared/src/gen/cairn/v1/agent.js";
import { checkpointRecord } from "../../../shared/src/grpc/wire/checkpointRecord.js";
import { domainState } from "../../../shared/src/grpc/wire/domainState.js";
import type { Logger } from "../../../shared/src/log/createLogger.js";
import { describeChain } from "../chain/describeChain.js";
import { forgetCheckpoints } from "../chain/forgetCheckpoints.js";
import { redefineCheckpoints } from "../chain/redefineCheckpoints.js";
import type { Hypervisor } from "../hypervisor/Hypervisor.js";

/** DescribeChain, RedefineCheckpoints and ForgetCheckpoints: the core's chain operations on the wire. */
export function chainRpcs(deps: { hypervisor: Hypervisor; log: Logger }): {
  describeChain(req: DescribeChainRequest, ctx: CallContext): Promise<DescribeChainResponse>;
  redefineCheckpoints(
    req: RedefineCheckpointsRequest,
    ctx: CallContext,
  ): Promise<RedefineCheckpointsResponse>;
  forgetCheckpoints(req: ForgetCheckpointsRequest, ctx: CallContext): Promise<ForgetCheckpointsResponse>;
} {
  return {
    async describeChain(req: DescribeChainRequest, ctx: CallContext) {
      const c = await describeChain(deps.hypervisor, req.domainUuid, ctx.signal);
      return {
        found: c.found,
        domainName: c.domainName,
        state: domainState.toWire(c.state),
        persistent: c.persistent,
        checkpoints: c.checkpoints.map(checkpointRecord.toWire),
        bitmaps: [...c.bitmaps].flatMap(([target, list]) =>
          list.map((b) => ({
            target,
            name: b.name,
            recording: b.recording !== false,
            inconsistent: b.inconsistent,
          })),
        ),
        activeJob: c.activeJob,
      };
    },
    async redefineCheckpoints(req: RedefineCheckpointsRequest, ctx: CallContext) {
      const r = await redefineCheckpoints(
        deps,
        { domainUuid: req.domainUuid, checkpoints: req.checkpoints },
        ctx.signal,
      );
      return {
        redefined: r.redefined,
        alreadyPresent: r.alreadyPresent,
        verdicts: r.verdicts,
        elapsedMs: r.elapsedMs,
      };
    },
    async forgetCheckpoints(req: ForgetCheckpointsRequest, ctx: CallContext) {
      return forgetCheckpoints(deps.hypervisor, { domainUuid: req.domainUuid, names: req.names }, ctx.signal);
    },
  };
}
