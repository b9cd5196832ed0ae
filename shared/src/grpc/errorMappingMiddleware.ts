import { type CallContext, ServerError, type ServerMiddlewareCall, Status } from "nice-grpc-common";
import { CairnError } from "../errors/CairnError.js";
import { toGrpcStatus } from "./toGrpcStatus.js";

/**
 * Server middleware: CairnError → ServerError with the mapped status and the operator-facing message.
 * Anything else becomes INTERNAL without leaking internals; the caller logs the original.
 */
export function errorMappingMiddleware(onInternal: (err: unknown, method: string) => void) {
  return async function* errorMapping<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    try {
      return yield* call.next(call.request, context);
    } catch (err) {
      // Client cancellation surfaces as an AbortError: let nice-grpc handle it.
      if (err instanceof ServerError || (err instanceof Error && err.name === "AbortError")) throw err;
      if (err instanceof CairnError) throw new ServerError(toGrpcStatus(err.code), err.userMessage);
      onInternal(err, call.method.path);
      throw new ServerError(Status.INTERNAL, `internal error in ${call.method.path}; see the server log`);
    }
  };
}
