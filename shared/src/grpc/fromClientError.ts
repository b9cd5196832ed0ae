import { ClientError, Status } from "nice-grpc-common";
import { CairnError, type CairnErrorCode } from "../errors/CairnError.js";

const CODES: Partial<Record<Status, CairnErrorCode>> = {
  [Status.INVALID_ARGUMENT]: "invalid-argument",
  [Status.NOT_FOUND]: "not-found",
  [Status.ALREADY_EXISTS]: "already-exists",
  [Status.FAILED_PRECONDITION]: "failed-precondition",
  [Status.UNAVAILABLE]: "unavailable",
  [Status.DEADLINE_EXCEEDED]: "timeout",
  [Status.CANCELLED]: "aborted",
  [Status.DATA_LOSS]: "corrupt",
  [Status.RESOURCE_EXHAUSTED]: "resource-exhausted",
  [Status.PERMISSION_DENIED]: "permission-denied",
  [Status.UNAUTHENTICATED]: "unauthenticated",
  [Status.UNIMPLEMENTED]: "unimplemented",
};

/** A gRPC failure seen by a client, back in Cairn's taxonomy (so the CLI's exit codes mean the same). */
export function fromClientError(err: unknown, peer: string): unknown {
  if (!(err instanceof ClientError)) return err;
  const code = CODES[err.code] ?? "internal";
  const hint =
    err.code === Status.UNAVAILABLE
      ? `is the coordinator running and reachable at ${peer}? (--coordinator or CAIRN_COORDINATOR)`
      : undefined;
  return new CairnError(code, err.details, { cause: err, ...(hint ? { hint } : {}) });
}
