import { Status } from "nice-grpc-common";
import type { CairnErrorCode } from "../errors/CairnError.js";

/** The one place where Cairn's error codes become gRPC status codes (used at the server edge). */
export function toGrpcStatus(code: CairnErrorCode): Status {
  switch (code) {
    case "invalid-argument":
      return Status.INVALID_ARGUMENT;
    case "not-found":
      return Status.NOT_FOUND;
    case "already-exists":
      return Status.ALREADY_EXISTS;
    case "failed-precondition":
      return Status.FAILED_PRECONDITION;
    case "unavailable":
      return Status.UNAVAILABLE;
    case "timeout":
      return Status.DEADLINE_EXCEEDED;
    case "aborted":
      return Status.CANCELLED;
    case "corrupt":
      return Status.DATA_LOSS;
    case "protocol":
      return Status.INTERNAL;
    case "resource-exhausted":
      return Status.RESOURCE_EXHAUSTED;
    case "permission-denied":
      return Status.PERMISSION_DENIED;
    case "unauthenticated":
      return Status.UNAUTHENTICATED;
    case "unimplemented":
      return Status.UNIMPLEMENTED;
    case "internal":
      return Status.INTERNAL;
  }
}
