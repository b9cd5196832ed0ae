import {
  CoordinatorServiceDefinition,
  type CoordinatorServiceImplementation,
} from "../../../shared/src/gen/cairn/v1/coordinator.js";
import { withUnimplemented } from "../../../shared/src/grpc/withUnimplemented.js";
import { CAIRN_VERSION } from "../../../shared/src/version.js";

/** The gRPC CoordinatorService. The registry, scheduler and admin API arrive with the coordinator issue. */
export function createCoordinatorService(): CoordinatorServiceImplementation {
  return withUnimplemented<CoordinatorServiceImplementation>(CoordinatorServiceDefinition, {}, CAIRN_VERSION);
}
